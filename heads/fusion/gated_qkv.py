"""Query, key and value of one modality, with query and key gated by the other modality.

Shared by both cross-modal fusions: the gate (element-wise product with the other modality's
aligned vector) is how CMF lets one modality decide which dimensions of the other matter.
"""

from __future__ import annotations

import torch
from torch import nn


class GatedQueryKeyValue(nn.Module):
    """(x [B, d], other [B, d]) -> (query, key, value), each [B, d]; query and key are multiplied by other."""

    def __init__(self, embed_dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.query = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Dropout(dropout))
        self.key = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Dropout(dropout))
        self.value = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.query(x) * other, self.key(x) * other, self.value(x)
