"""Trainable heads of SPP-SCL (image-text sentiment), and of the methods it is compared with (CLMLF- and
MDSE-style), on top of cached frozen-encoder features. `config.head` selects one (heads/head_kinds.py)."""

from spp_scl.heads.clmlf import CLMLFHead, clmlf_step
from spp_scl.heads.config import FUSION_KINDS, HEAD_KINDS, MODALITIES, SPPSCLConfig
from spp_scl.heads.head_kinds import build_head_model, report_keys_for, training_step_for
from spp_scl.heads.mdse import MDSEHead, mdse_step
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.presets import PRESETS, resolve_config
from spp_scl.heads.training_step import spp_scl_step, step_one_losses
from spp_scl.heads.two_step import AlignmentDecision, alignment_decision

__all__ = [
    "FUSION_KINDS",
    "HEAD_KINDS",
    "MODALITIES",
    "PRESETS",
    "AlignmentDecision",
    "CLMLFHead",
    "MDSEHead",
    "SPPSCLConfig",
    "SPPSCLHead",
    "alignment_decision",
    "build_head_model",
    "clmlf_step",
    "mdse_step",
    "report_keys_for",
    "resolve_config",
    "spp_scl_step",
    "step_one_losses",
    "training_step_for",
]
