"""Many SPP-SCL heads of one architecture as one model with a leading trial axis (runs/train/grouped_trainer.py)."""

from spp_scl.heads.stacked.adamw import StackedAdamW
from spp_scl.heads.stacked.model import StackedSPPSCLHead
from spp_scl.heads.stacked.training_step import stacked_spp_scl_step

__all__ = ["StackedAdamW", "StackedSPPSCLHead", "stacked_spp_scl_step"]
