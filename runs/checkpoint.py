"""A trained head on disk: `model.safetensors` (weights) and `head.json` (config and shapes). No pickle."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from heads.config import SPPSCLConfig
from heads.head_kinds import build_head_model


def save_head(run_dir: Path, model: nn.Module, config: SPPSCLConfig, shapes: dict) -> None:
    """`shapes`: image_channels, text_dim, num_layers, num_classes, class_names, text_layers (what rebuilds it)."""
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    tmp = run_dir / "model.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(run_dir / "model.safetensors")
    (run_dir / "head.json").write_text(json.dumps({"config": config.to_dict(), **shapes}, indent=1))


def build_head(config: SPPSCLConfig, shapes: dict) -> nn.Module:
    """The head `config.head` names (SPPSCLHead, CLMLFHead or MDSEHead), untrained."""
    return build_head_model(
        config, shapes["image_channels"], shapes["text_dim"], shapes["num_layers"], shapes["num_classes"]
    )


def load_head(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, SPPSCLConfig, dict]:
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "head.json").read_text())
    config = SPPSCLConfig.from_dict(meta.pop("config"))
    model = build_head(config, meta)
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    return model.to(device).eval(), config, meta
