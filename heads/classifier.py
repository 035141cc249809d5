"""Sentiment classifier applied to the fused vector (or to t or v alone in the unimodal ablations)."""

from __future__ import annotations

import torch
from torch import nn

from spp_scl.heads.shift_gauge import exact_zero_gradient


class SentimentClassifier(nn.Module):
    """[B, in_dim] -> logits [B, num_classes] through one hidden layer."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 64, dropout: float = 0.2) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        exact_zero_gradient(self.layers[0].bias)  # the BatchNorm after it removes it (heads/shift_gauge.py)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.layers(fused)
