"""Private feature learning: what a modality's tokens carry that the other modality does not explain.

For each token x_i and its cross-attended (shared) version c_i, the similarity s_i = <x_i, c_i> / sqrt(d)
(the element-wise product summed) is softmaxed over the real tokens of the sequence; the reversed
weight 1 - s_i then scales x_i, so tokens that the other modality explains well count less. The weighted
tokens are filtered by a self-attention + feed-forward layer and mean-pooled over the real tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spp_scl.heads.tokens import AttentionBlock, masked_mean


class PrivateFeatures(nn.Module):
    """(tokens [B, L, d], shared [B, L, d], mask [B, L] bool True = real, or None) -> ([B, d], weights [B, L])."""

    def __init__(self, dim: int, heads: int, feedforward_dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(dim)
        self.filter = AttentionBlock(dim, heads, feedforward_dim, dropout)  # self-attention + feed-forward

    def forward(
        self, tokens: torch.Tensor, shared: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        similarity = (tokens * shared).sum(dim=-1) * self.scale
        if mask is not None:
            similarity = similarity.masked_fill(~mask, float("-inf"))
        reversed_weights = 1.0 - torch.softmax(similarity, dim=1)  # padded positions get 1; they stay masked
        filtered = self.filter(reversed_weights.unsqueeze(-1) * tokens, context_padding=None if mask is None else ~mask)
        return masked_mean(filtered, mask), reversed_weights
