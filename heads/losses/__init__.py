"""The SPP-SCL losses, one per file."""

from spp_scl.heads.losses.inter_modal_supcon import inter_modal_supcon_loss
from spp_scl.heads.losses.intra_modal_supcon import intra_modal_supcon_loss
from spp_scl.heads.losses.weighted_cross_entropy import weighted_cross_entropy

__all__ = ["inter_modal_supcon_loss", "intra_modal_supcon_loss", "weighted_cross_entropy"]
