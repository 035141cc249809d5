"""Image backbones from timm, named `timm:NAME` on the command line.

NAME is anything `timm.create_model` takes with pretrained weights: a model with its pretrained tag
(`timm:resnet50.a1_in1k`, weights from the hub's timm/ organisation), `timm:hf-hub:ORG/NAME`, or a folder saved by
timm (`timm:local-dir:/path`, config.json and model.safetensors). What is cached is the map before global pooling:
a CNN's last stage as it is, a ViT's patch tokens on their grid (class and register tokens dropped). The resize,
crop, interpolation and normalisation come from the weights' own pretrained config, as timm's eval transform
computes them (resize = floor(crop / crop_pct)). Weights are data here: timm builds the architecture from its own
code, and the cache names only the weights, never code to run.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from spp_scl.core.errors import InputError
from spp_scl.core.extras import require
from spp_scl.extract.images import Preprocess

PREFIX = "timm:"
# Keys of timm's pretrained config that say where the weights were read from, not what they are, and those of the
# classifier, which is removed (num_classes=0).
LOCATION_KEYS = ("file", "source", "hf_hub_id", "hf_hub_filename", "url", "state_dict")
CLASSIFIER_KEYS = ("num_classes", "label_names", "label_descriptions", "classifier")


def is_timm(spec: str) -> bool:
    return spec.startswith(PREFIX)


def local_folder(spec: str) -> Path | None:
    """The folder of a `timm:local-dir:PATH` spec; None for a hub name."""
    name = spec.removeprefix(PREFIX)
    return Path(name.removeprefix("local-dir:")).expanduser() if name.startswith("local-dir:") else None


def check_timm_spec(spec: str) -> None:
    """Before anything loads: timm importable, a local folder present."""
    if not spec.removeprefix(PREFIX):
        raise InputError(f"--image-encoder {spec}: name a timm model after 'timm:', e.g. timm:resnet50.a1_in1k")
    require("timm")
    folder = local_folder(spec)
    if folder is not None and not (folder / "config.json").is_file():
        raise InputError(f"--image-encoder {spec}: {folder} is not a folder saved by timm (no config.json in it)")
    if folder is not None and not (folder / "model.safetensors").is_file():  # pickled weights are not read here
        raise InputError(
            f"--image-encoder {spec}: {folder} has no model.safetensors; save the model with "
            "timm.models.save_for_hf(..., safe_serialization=True)"
        )


class TimmMaps(torch.nn.Module):
    """A timm model's forward_features as a map [B, C, h, w]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(pixels)
        if features.dim() == 4:
            # Swin and other channels-last models say so in output_fmt.
            return features.permute(0, 3, 1, 2) if getattr(self.model, "output_fmt", "NCHW") == "NHWC" else features
        if features.dim() != 3:
            raise ValueError(f"timm model output has shape {tuple(features.shape)}; expected a map or tokens")
        tokens = features[:, getattr(self.model, "num_prefix_tokens", 0) :]
        grid = getattr(getattr(self.model, "patch_embed", None), "grid_size", None)
        height, width = grid if grid is not None else (math.isqrt(tokens.shape[1]),) * 2
        if height * width != tokens.shape[1]:
            raise ValueError(f"timm model gives {tokens.shape[1]} patch tokens, not a {height} x {width} grid")
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def load_timm(spec: str) -> tuple[TimmMaps, Preprocess, dict]:
    """(the map module, its preprocessing, its pretrained config without the keys that name a location)."""
    import timm

    check_timm_spec(spec)
    name = spec.removeprefix(PREFIX)
    folder = local_folder(spec)
    if folder is not None:
        name = f"local-dir:{folder.resolve()}"
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0)
    except (RuntimeError, ValueError, OSError) as error:  # unknown name, no weights, hub out of reach
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"--image-encoder {spec}: timm cannot load it with pretrained weights: {first_line}") from None
    config = dict(model.pretrained_cfg)
    crop = int(config.get("input_size", (3, 224, 224))[-1])
    crop_pct = config.get("crop_pct") or 0.875
    interpolation = config.get("interpolation", "bilinear")
    preprocess = Preprocess(
        resize=math.floor(crop / crop_pct),
        crop=crop,
        mean=tuple(float(v) for v in config.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in config.get("std", (0.229, 0.224, 0.225))),
        interpolation="bicubic" if interpolation == "bicubic" else "bilinear",
    )
    identity = {key: value for key, value in config.items() if key not in LOCATION_KEYS + CLASSIFIER_KEYS}
    return TimmMaps(model), preprocess, identity
