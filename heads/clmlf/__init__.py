"""CLMLF-style head (Li et al., NAACL 2022 Findings): token-level fusion of text and image tokens."""

from spp_scl.heads.clmlf.model import CLMLFHead
from spp_scl.heads.clmlf.training_step import CLMLF_REPORT_KEYS, clmlf_step

__all__ = ["CLMLF_REPORT_KEYS", "CLMLFHead", "clmlf_step"]
