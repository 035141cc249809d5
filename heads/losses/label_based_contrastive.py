"""CLMLF's label-based contrastive loss (LBCL): a supervised contrastive loss on the fused vectors.

Each sample is pulled towards the other samples of its batch with the same label and pushed from the
rest, exactly the form of the intra-modal loss (Khosla et al. 2020, see intra_modal_supcon.py) applied
to the fused representation (after its projection head) instead of to one modality:

    loss_i = - mean_{p: y_p = y_i, p != i} log( exp(s_ip / tau) / sum_{a != i} exp(s_ia / tau) )

with s the cosine similarity; anchors without a positive are skipped.
"""

from __future__ import annotations

import torch

from spp_scl.heads.losses.intra_modal_supcon import intra_modal_supcon_loss


def label_based_contrastive_loss(fused: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """fused [B, d], labels [B] -> scalar (a connected zero when no anchor has a positive)."""
    return intra_modal_supcon_loss(fused, labels, temperature)
