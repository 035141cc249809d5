"""CLMLF's data-based contrastive loss (DBCL): each post against a second, augmented view of itself.

Row i of `anchors` (the batch as trained on, after the LBCL projection) and row i of `positives` (a second stored
view of the same post, after its own projection, as CLMLF keeps one projection per branch) are the positive pair;
the other posts' second views are the negatives:

    loss_i = - log( exp(s_ii / tau) / sum_j exp(s_ij / tau) ),   s_ij = cos(anchor_i, positive_j)

the mean over i. CLMLF's code uses the raw dot product of the projections; the cosine here matches the paper's
similarity and this project's LBCL (heads/losses/label_based_contrastive.py), and keeps tau on a fixed scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def data_based_contrastive_loss(
    anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.07
) -> torch.Tensor:
    """anchors [B, d], positives [B, d] (row i: the same post) -> scalar."""
    logits = F.normalize(anchors, dim=1) @ F.normalize(positives, dim=1).transpose(0, 1) / temperature
    return F.cross_entropy(logits, torch.arange(len(anchors), device=anchors.device))
