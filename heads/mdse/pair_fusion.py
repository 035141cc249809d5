"""Fusion of two vectors of one width: a modality's shared and private vectors into its embedding, and
the image and text embeddings into the fused vector.

[a; b] (2d) -> Linear -> LayerNorm -> GELU -> d. The same form serves both steps of MDSE's fusion:
shared with private per modality, then the image embedding with the text embedding.
"""

from __future__ import annotations

import torch
from torch import nn


class PairFusion(nn.Module):
    """(a [B, d], b [B, d]) -> [B, d]."""

    def __init__(self, dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(2 * dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([a, b], dim=1))
