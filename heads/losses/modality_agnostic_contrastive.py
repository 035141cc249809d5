"""MDSE's modality-agnostic contrastive loss (MACL).

The image, text and fused embeddings of a batch of B pairs are pooled into 3B samples, each carrying its
pair's label, and a supervised contrastive loss runs over them as if modality did not exist: an anchor's
positives are all other same-label samples, whatever their modality (so each pair's own embeddings in
the two other roles are always positives), and its denominator runs over all other 3B - 1 samples:

    loss_i = - mean_{p: y_p = y_i, p != i} log( exp(s_ip / tau) / sum_{a != i} exp(s_ia / tau) )

with s the cosine similarity. The three embeddings must have the same width.
"""

from __future__ import annotations

import torch

from spp_scl.heads.losses.intra_modal_supcon import intra_modal_supcon_loss


def modality_agnostic_contrastive_loss(
    image: torch.Tensor, text: torch.Tensor, fused: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07
) -> torch.Tensor:
    """image, text, fused [B, d], labels [B] -> scalar. With B >= 1 every anchor has a positive."""
    samples = torch.cat([image, text, fused], dim=0)
    return intra_modal_supcon_loss(samples, labels.repeat(3), temperature)
