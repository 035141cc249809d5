"""The frozen image encoder: a feature map [C, h, w] per image, before any pooling.

Three forms:
- a transformers vision model (hub id or local folder, default microsoft/resnet-50): a CNN's
  `last_hidden_state` map as is; a ViT-style model's patch tokens reshaped to their grid; of a two-tower
  checkpoint (CLIP, SigLIP), the vision tower's patch tokens;
- a timm model, `timm:NAME` (extract/timm_encoder.py);
- a plugin `path/to/file.py:function` or `package.module:function`, where `function()` returns
  `(module, preprocess)`: `module(pixels [B, 3, S, S]) -> [B, C, h, w]`, and `preprocess` a dict with
  `resize`, `crop`, `mean`, `std` and `name` (identifies the weights; part of the fingerprint).

A plugin is code. The fingerprint records the sha256 of its source file (`source_sha256`), which can be
compared before that code runs (`plugin_source_sha256` finds the file without importing anything).
transformers models are always loaded with trust_remote_code=False: a model folder never runs its own code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import math
import re
from pathlib import Path

import torch

from spp_scl.extract.fingerprint import sha256_json, sha256_state_dict
from spp_scl.extract.images import Preprocess
from spp_scl.extract.timm_encoder import is_timm, load_timm

PLUGIN_FORM = re.compile(r"^(?P<target>.+\.py|[A-Za-z_][\w.]*):(?P<function>[A-Za-z_]\w*)$")
IMAGENET = Preprocess(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def is_plugin(spec: str) -> bool:
    return PLUGIN_FORM.match(spec) is not None and not Path(spec).is_dir() and not is_timm(spec)


def plugin_source_file(spec: str) -> Path | None:
    """The file a plugin's code comes from, found without importing or running anything; None when it has no
    source file on disk (a built-in or namespace module) or cannot be found."""
    match = PLUGIN_FORM.match(spec)
    if match is None:
        return None
    target = match["target"]
    if target.endswith(".py"):
        return Path(target) if Path(target).is_file() else None
    search, found = None, None
    parts = target.split(".")
    for depth in range(1, len(parts) + 1):
        found = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), search)
        if found is None:
            return None
        search = found.submodule_search_locations
        if depth < len(parts) and search is None:
            return None
    origin = Path(found.origin) if found.origin else None
    return origin if origin is not None and origin.is_file() else None


def plugin_source_sha256(spec: str) -> str | None:
    path = plugin_source_file(spec)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None


def load_plugin(spec: str):
    """Import `file.py:function` or `package.module:function` and call it: (module, preprocess dict)."""
    match = PLUGIN_FORM.match(spec)
    target, function = match["target"], match["function"]
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ValueError(f"--image-encoder {spec}: no file {path}")
        module_spec = importlib.util.spec_from_file_location(f"image_encoder_plugin_{path.stem}", path)
        plugin = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(plugin)
    else:
        plugin = importlib.import_module(target)
    if not callable(getattr(plugin, function, None)):
        raise ValueError(f"--image-encoder {spec}: {target} has no function {function}()")
    result = getattr(plugin, function)()
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module)):
        raise ValueError(f"--image-encoder {spec}: {function}() must return (torch module, preprocess dict)")
    return result


def check_plugin_preprocess(spec: str, preprocess: dict) -> tuple[Preprocess, str]:
    def fail(key, wanted):
        raise ValueError(f"--image-encoder {spec}: preprocess[{key!r}] must be {wanted}, got {preprocess.get(key)!r}")

    if not isinstance(preprocess, dict):
        raise ValueError(f"--image-encoder {spec}: preprocess must be a dict")
    for key in ("resize", "crop"):
        if not isinstance(preprocess.get(key), int) or preprocess[key] <= 0:
            fail(key, "a positive int")
    for key in ("mean", "std"):
        value = preprocess.get(key)
        if not (
            isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)
        ):
            fail(key, "3 numbers")
    if any(v <= 0 for v in preprocess["std"]):
        fail("std", "3 positive numbers")
    if not isinstance(preprocess.get("name"), str) or not preprocess["name"]:
        fail("name", "a non-empty string naming the weights")
    return Preprocess(
        preprocess["resize"],
        preprocess["crop"],
        tuple(map(float, preprocess["mean"])),
        tuple(map(float, preprocess["std"])),
    ), preprocess["name"]


def transformers_preprocess(name_or_path: str, local_files_only: bool = False) -> Preprocess:
    """The paper's resize/crop/normalise with the sizes and statistics from the model's preprocessor config:
    crop = its shortest edge (or height), resize = crop / crop_pct when it has one (224 / 0.875 = 256)."""
    from transformers.utils import cached_file

    path = cached_file(
        name_or_path,
        "preprocessor_config.json",
        _raise_exceptions_for_missing_entries=False,
        local_files_only=local_files_only,
    )
    if path is None:
        return IMAGENET
    config = json.loads(Path(path).read_text())
    size = config.get("size", IMAGENET.crop)
    if isinstance(size, dict):
        size = size.get("shortest_edge") or size.get("height") or IMAGENET.crop
    crop_size = config.get("crop_size")
    crop = (crop_size.get("height") if isinstance(crop_size, dict) else crop_size) or size
    resize = round(crop / config["crop_pct"]) if config.get("crop_pct") else max(size, crop)
    return Preprocess(
        int(resize),
        int(crop),
        tuple(config.get("image_mean", IMAGENET.mean)),
        tuple(config.get("image_std", IMAGENET.std)),
    )


def tokens_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """[B, N, D] ViT-style tokens -> [B, D, g, g] from the last g*g (patch) tokens; leading class or
    register tokens are dropped."""
    grid = math.isqrt(tokens.shape[1])
    patches = tokens[:, tokens.shape[1] - grid * grid :]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid, grid)


class _TransformersMaps(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixels):
        hidden = self.model(pixel_values=pixels).last_hidden_state
        if hidden.dim() == 4:
            return hidden
        if hidden.dim() == 3:
            return tokens_to_map(hidden)
        raise ValueError(f"image model output has shape {tuple(hidden.shape)}; expected a map or tokens")


class ImageEncoder:
    def __init__(
        self,
        spec: str,
        device: torch.device | str = "cpu",
        resize: int | None = None,
        crop: int | None = None,
        local_files_only: bool = False,  # offline with a cached hub id (spp_scl.extract.encoder_source)
    ):
        self.spec = spec
        self.device = torch.device(device)
        self.config_identity = None  # what the fingerprint's config_sha256 hashes
        if is_timm(spec):
            module, self.preprocess, self.config_identity = load_timm(spec)
            self.weights_name, self.kind = spec, "timm"
        elif is_plugin(spec):
            self.source_sha256 = plugin_source_sha256(spec)  # before its code runs
            module, preprocess = load_plugin(spec)
            self.preprocess, self.weights_name = check_plugin_preprocess(spec, preprocess)
            self.kind = "plugin"
        else:
            from transformers import AutoModel

            torch.manual_seed(0)  # weights the checkpoint lacks (an unused pooler, say) are then the same each run
            model = AutoModel.from_pretrained(spec, trust_remote_code=False, local_files_only=local_files_only)
            if hasattr(model, "vision_model") and hasattr(model, "text_model"):  # CLIP, SigLIP: the vision tower
                model.vision_model.config._name_or_path = model.config._name_or_path  # as a whole model's config
                model = model.vision_model
            module = _TransformersMaps(model)
            self.config_identity = model.config.to_dict()
            self.preprocess, self.weights_name = transformers_preprocess(spec, local_files_only), spec
            self.kind = "transformers"
        if resize or crop:
            self.preprocess = Preprocess(
                resize or self.preprocess.resize,
                crop or self.preprocess.crop,
                self.preprocess.mean,
                self.preprocess.std,
                self.preprocess.interpolation,
            )
        self.module = module.eval().to(self.device)

    def describe(self) -> dict:
        description = {
            "kind": self.kind,
            "name": self.weights_name,
            "weights_sha256": sha256_state_dict(self.module),
            "preprocess": self.preprocess.as_dict(),
            "config_sha256": sha256_json(self.config_identity) if self.config_identity is not None else None,
        }
        if self.kind == "plugin":
            description["source_sha256"] = self.source_sha256
        return description

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        maps = self.module(pixels.to(self.device))
        if maps.dim() != 4:
            raise ValueError(f"image encoder {self.spec} returned shape {tuple(maps.shape)}; expected [B, C, h, w]")
        return maps.float().cpu().contiguous()
