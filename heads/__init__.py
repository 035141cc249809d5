"""Trainable heads of SPP-SCL (image-text sentiment), on top of cached frozen-encoder features."""

from heads.config import FUSION_KINDS, MODALITIES, PRESETS, SPPSCLConfig, resolve_config
from heads.model import SPPSCLHead
from heads.training_step import spp_scl_step, step_one_losses
from heads.two_step import AlignmentDecision, alignment_decision

__all__ = [
    "FUSION_KINDS",
    "MODALITIES",
    "PRESETS",
    "AlignmentDecision",
    "SPPSCLConfig",
    "SPPSCLHead",
    "alignment_decision",
    "resolve_config",
    "spp_scl_step",
    "step_one_losses",
]
