"""A stack of self-attention blocks over one token sequence, padded positions masked as keys."""

from __future__ import annotations

import torch
from torch import nn

from spp_scl.heads.tokens.attention_block import AttentionBlock


class SelfAttentionEncoder(nn.Module):
    """(tokens [B, L, d], mask [B, L] bool True = real, or None = all real) -> [B, L, d].

    Padded positions are computed like the others (queries are never masked) and must be ignored by
    whatever pools the result; no real position ever attends to them.
    """

    def __init__(self, dim: int, heads: int, feedforward_dim: int, layers: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(AttentionBlock(dim, heads, feedforward_dim, dropout) for _ in range(layers))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        padding = None if mask is None else ~mask
        for block in self.blocks:
            tokens = block(tokens, context_padding=padding)
        return tokens
