"""The paper's "without CMF" ablation: the fused vector is just [v, t]."""

from __future__ import annotations

import torch
from torch import nn


class ConcatFusion(nn.Module):
    """(v [B, d], t [B, d]) -> [B, 2d]."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.out_dim = 2 * embed_dim

    def forward(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([v, t], dim=1)
