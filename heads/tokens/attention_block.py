"""One Transformer block: multi-head attention from a sequence to a context, then a feed-forward block,
each added back to its input and layer-normalised (post-norm, as in BERT, whose layers CLMLF reuses).

With no context given the block attends to its own sequence (a self-attention encoder layer); with the
other modality's tokens as context it is a cross-attention ("co-attention") layer.

Dropout acts on the attention output and on the feed-forward output, as in BERT, but not on the attention
weights (BERT drops those too): on a CPU, drawing a random mask over the B x heads x S x S weights took
about a quarter of a CLMLF training step.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionBlock(nn.Module):
    """(tokens [B, L, d], context [B, S, d] or None = tokens, context_padding [B, S] bool True = padding)
    -> [B, L, d]."""

    def __init__(self, dim: int, heads: int, feedforward_dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.attention_norm = nn.LayerNorm(dim)
        self.feedforward = nn.Sequential(nn.Linear(dim, feedforward_dim), nn.GELU(), nn.Linear(feedforward_dim, dim))
        self.feedforward_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, tokens: torch.Tensor, context: torch.Tensor | None = None, context_padding: torch.Tensor | None = None
    ) -> torch.Tensor:
        context = tokens if context is None else context
        attended, _ = self.attention(tokens, context, context, key_padding_mask=context_padding, need_weights=False)
        hidden = self.attention_norm(tokens + self.dropout(attended))
        return self.feedforward_norm(hidden + self.dropout(self.feedforward(hidden)))
