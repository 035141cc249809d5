"""Many SPP-SCL heads of one architecture as one model with a leading trial axis (runs/grouped_trainer.py)."""

from heads.stacked.adamw import StackedAdamW
from heads.stacked.model import StackedSPPSCLHead
from heads.stacked.training_step import stacked_spp_scl_step

__all__ = ["StackedAdamW", "StackedSPPSCLHead", "stacked_spp_scl_step"]
