"""Text tokens: the states of one cached encoder layer (the last by default), projected to the model width.

Both CLMLF and MDSE read the text encoder's last hidden states token by token; the cache holds several
layers, so `token_layer` picks one (an index into the layers the head is given, -1 = the last). The
token states keep their zero padding; the caller carries the mask.
"""

from __future__ import annotations

import torch
from torch import nn


class TextTokens(nn.Module):
    """token_states [B, K, L, D] -> tokens [B, L, dim] of layer `token_layer`."""

    def __init__(self, text_dim: int, dim: int, num_layers: int, token_layer: int = -1, dropout: float = 0.2) -> None:
        super().__init__()
        if not -num_layers <= token_layer < num_layers:
            raise ValueError(f"token_layer={token_layer}: the head is given {num_layers} text layers")
        self.num_layers = num_layers
        self.token_layer = token_layer
        self.project = nn.Sequential(nn.Linear(text_dim, dim), nn.LayerNorm(dim), nn.Dropout(dropout))

    def forward(self, token_states: torch.Tensor) -> torch.Tensor:
        if token_states.shape[1] != self.num_layers:
            raise ValueError(f"built for {self.num_layers} text layers, got token_states {tuple(token_states.shape)}")
        # Only the layer read is converted from the cache's float16, when the batch kept it.
        return self.project(token_states[:, self.token_layer].to(self.project[0].weight.dtype))
