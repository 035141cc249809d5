"""MDSE-style head (modality-dependent sentiments exploring, ICASSP): shared and private features."""

from spp_scl.heads.mdse.model import MDSEHead
from spp_scl.heads.mdse.private_features import PrivateFeatures
from spp_scl.heads.mdse.training_step import MDSE_REPORT_KEYS, mdse_step

__all__ = ["MDSE_REPORT_KEYS", "MDSEHead", "PrivateFeatures", "mdse_step"]
