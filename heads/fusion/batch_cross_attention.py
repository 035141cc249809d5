"""Cross-Modal Fusion as the paper (and the authors' code) has it: attention across the batch.

For each modality the gated query and key are [B, d], so softmax(q k^T / sqrt(d)) is a [B, B] matrix:
each sample's attended vector is a mixture of the values of the samples it happens to share a batch
with. A prediction therefore depends on the batch composition, and at batch size 1 the attention is
the identity. This is a known defect of the pattern; it is kept here only to reproduce the paper
(`fusion="cmf-batch"`). `bank_cross_attention.py` is the batch-independent replacement.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spp_scl.heads.fusion.gated_qkv import GatedQueryKeyValue


class CrossModalBatchFusion(nn.Module):
    """(v [B, d], t [B, d]) -> fused [B, 4d] = [v attended, t attended, v, t]."""

    def __init__(self, embed_dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.image_qkv = GatedQueryKeyValue(embed_dim, dropout)
        self.text_qkv = GatedQueryKeyValue(embed_dim, dropout)
        self.scale = 1.0 / math.sqrt(embed_dim)
        self.out_dim = 4 * embed_dim

    def _attend_over_batch(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        attention = torch.softmax(query @ key.transpose(0, 1) * self.scale, dim=-1)  # [B, B]
        return attention @ value

    def forward(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v_attended = self._attend_over_batch(*self.image_qkv(v, t))
        t_attended = self._attend_over_batch(*self.text_qkv(t, v))
        return torch.cat([v_attended, t_attended, v, t], dim=1)
