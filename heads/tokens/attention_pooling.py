"""Attention pooling: one learned score per token, softmax over the real tokens, weighted sum.

This is how CLMLF turns its fused token sequence into one vector (a small two-layer scorer per token).
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionPooling(nn.Module):
    """tokens [B, L, d], mask [B, L] bool (True = real) -> ([B, d], weights [B, L])."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, 1))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(tokens).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        # Select rather than multiply: a padded token's value may be anything, and 0 * NaN is NaN.
        kept = torch.where(mask.unsqueeze(-1), tokens, torch.zeros_like(tokens))
        return (weights.unsqueeze(-1) * kept).sum(dim=1), weights
