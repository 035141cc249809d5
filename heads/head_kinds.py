"""The head selector: which model `config.head` builds, which training step fits it, what the trainer logs.

Every head takes the same inputs (image_maps, first_token, token_states, token_mask) and returns at least
"fused" and "logits", and every step has spp_scl_step's signature, so the trainer, checkpoints, sweeps and
tables treat all heads alike.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from spp_scl.heads.clmlf import CLMLF_REPORT_KEYS, CLMLFHead, clmlf_step
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.mdse import MDSE_REPORT_KEYS, MDSEHead, mdse_step
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.probe import LinearProbeHead
from spp_scl.heads.training_step import spp_scl_step

# What the trainer averages per epoch into log.jsonl (the keys of each step's report it keeps).
SPP_SCL_REPORT_KEYS = ("loss_step_one", "loss_step_two", "ce", "intra_image", "intra_text", "inter", "step_two_ran")

_MODELS = {"spp-scl": SPPSCLHead, "clmlf": CLMLFHead, "mdse": MDSEHead, "probe": LinearProbeHead}
_STEPS = {"spp-scl": spp_scl_step, "clmlf": clmlf_step, "mdse": mdse_step}
# The probe is fitted in closed form by spp_scl.runs.train.probe.fit_probe, not by gradient steps: it has no training step.
_REPORT_KEYS = {"spp-scl": SPP_SCL_REPORT_KEYS, "clmlf": CLMLF_REPORT_KEYS, "mdse": MDSE_REPORT_KEYS, "probe": ()}


def build_head_model(
    config: SPPSCLConfig, image_channels: int, text_dim: int, num_layers_cached: int, num_classes: int
) -> nn.Module:
    return _MODELS[config.head](config, image_channels, text_dim, num_layers_cached, num_classes)


def training_step_for(config: SPPSCLConfig) -> Callable[..., dict[str, float]]:
    """step(model, batch, optimizer, config, backward=None) -> report of floats."""
    if config.head not in _STEPS:
        raise ValueError(f"head {config.head!r} is not trained by gradient steps (see spp_scl.runs.train.probe)")
    return _STEPS[config.head]


def report_keys_for(config: SPPSCLConfig) -> tuple[str, ...]:
    return _REPORT_KEYS[config.head]
