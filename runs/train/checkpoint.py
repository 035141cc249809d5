"""A trained head on disk: `model.safetensors` (weights) and `head.json` (config and shapes). No pickle.

Reading a checkpoint trusts nothing in it: head.json's fields are checked (types, ranges, class names against
the number of classes), the head it describes is built on PyTorch's "meta" device (shapes only, no memory) and
compared tensor by tensor with the shapes in the safetensors header, so a tampered size is refused before
anything is allocated (a real allocation is then bounded by the size of the weights file). Weights that are
not finite are never written (a diverged training raises Diverged instead) and never loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from spp_scl.core.errors import Diverged, InputError
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.head_kinds import build_head_model

MAX_WIDTH = 1 << 16  # no cached feature is this wide (BERT-large 1024, ResNet-50 maps 2048 channels)
MAX_LAYERS = 256
MAX_CLASSES = 10_000


class CheckpointError(InputError):
    """head.json or model.safetensors that cannot be used as they are."""


def first_non_finite(tensors) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, else None."""
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def save_head(run_dir: Path, model: nn.Module, config: SPPSCLConfig, shapes: dict) -> None:
    """`shapes`: image_channels, text_dim, num_layers, num_classes, class_names, text_layers (what rebuilds it)."""
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    bad = first_non_finite(state.items())
    if bad is not None:
        raise Diverged(f"the head's weights are not finite ({bad}): training diverged; nothing was saved in {run_dir}")
    tmp = run_dir / "model.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(run_dir / "model.safetensors")
    (run_dir / "head.json").write_text(json.dumps({"config": config.to_dict(), **shapes}, indent=1))


def build_head(config: SPPSCLConfig, shapes: dict) -> nn.Module:
    """The head `config.head` names (SPPSCLHead, CLMLFHead or MDSEHead), untrained."""
    return build_head_model(
        config, shapes["image_channels"], shapes["text_dim"], shapes["num_layers"], shapes["num_classes"]
    )


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object; anything else is a one-line CheckpointError naming it."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} must hold a JSON object, not a {type(value).__name__}")
    return value


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_head_meta(run_dir: str | Path) -> tuple[SPPSCLConfig, dict]:
    """(config, shapes) from head.json, every field checked; an unusable one is named."""
    path = Path(run_dir) / "head.json"
    meta = read_json_object(path)

    def fail(field: str, why: str):
        raise CheckpointError(f"{path}: field {field!r} {why}")

    limits = {"image_channels": MAX_WIDTH, "text_dim": MAX_WIDTH, "num_layers": MAX_LAYERS, "num_classes": MAX_CLASSES}
    for field, limit in limits.items():
        value = meta.get(field)
        if not _whole(value) or not 1 <= value <= limit:
            fail(field, f"must be a whole number from 1 to {limit}, got {value!r}")
    names = meta.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        fail("class_names", f"must be a list of non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        fail("class_names", f"names a class twice: {names}")
    if len(names) != meta["num_classes"]:
        fail("class_names", f"has {len(names)} names but num_classes is {meta['num_classes']}")
    layers = meta.get("text_layers")
    if not isinstance(layers, list) or not all(_whole(x) and 0 <= x <= MAX_LAYERS for x in layers):
        fail("text_layers", f"must be a list of layer numbers, got {layers!r}")
    if len(layers) != meta["num_layers"]:
        fail("text_layers", f"has {len(layers)} layers but num_layers is {meta['num_layers']}")
    if not isinstance(meta.get("config"), dict):
        fail("config", "must be an object of config fields")
    try:
        config = SPPSCLConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as error:
        fail("config", f"is not a valid head config ({error})")
    for field in (
        "embed_dim",
        "lstm_hidden",
        "image_reduced_channels",
        "fusion_hidden",
        "bank_size",
        "model_dim",
        "feedforward_dim",
    ):
        value = getattr(config, field, 1)
        if not _whole(value) or not 1 <= value <= MAX_WIDTH:
            fail(f"config.{field}", f"must be a whole number from 1 to {MAX_WIDTH}, got {value!r}")
    shapes = {key: value for key, value in meta.items() if key != "config"}
    return config, shapes


def _checked_weights(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of `path`, after their names and shapes are checked against `model` (built on "meta")."""
    from safetensors import safe_open

    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt") as handle:
            found = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as error:  # safetensors reports a cut or garbled header with its own error types
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None
    missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not hold the head that head.json describes (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    for name, shape in expected.items():
        if found[name] != shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {list(found[name])}; head.json implies {list(shape)}"
            )
    try:
        tensors = load_file(str(path))
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error})") from None
    bad = first_non_finite(tensors.items())
    if bad is not None:
        raise CheckpointError(f"{path}: tensor {bad} is not finite (a diverged training): this head is not served")
    return tensors


def load_head(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, SPPSCLConfig, dict]:
    run_dir = Path(run_dir)
    config, shapes = read_head_meta(run_dir)
    with torch.device("meta"):
        outline = build_head(config, shapes)
    tensors = _checked_weights(run_dir / "model.safetensors", outline)
    model = build_head(config, shapes)
    model.load_state_dict(tensors)
    return model.to(device).eval(), config, shapes
