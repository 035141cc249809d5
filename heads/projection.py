"""Per-modality projection into the shared d-dimensional space, followed by the alignment layer.

The alignment layer's output (t for text, v for image) is where the contrastive losses act, what the
two-step rule measures, and what the fusion takes.
"""

from __future__ import annotations

import torch
from torch import nn

from spp_scl.heads.shift_gauge import exact_zero_gradient


class ModalityProjection(nn.Module):
    """[B, in_dim] -> [B, embed_dim]: projection (two linear layers) then the alignment layer."""

    def __init__(self, in_dim: int, embed_dim: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        # The projection ends on BatchNorm without an activation, so the alignment layer sees
        # signed, normalised features.
        self.projection = nn.Sequential(
            nn.Linear(in_dim, embed_dim),
            nn.BatchNorm1d(embed_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(embed_dim, embed_dim),
            nn.BatchNorm1d(embed_dim),
        )
        self.alignment = nn.Sequential(
            nn.Linear(embed_dim, embed_dim),
            nn.BatchNorm1d(embed_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        # Shifts a following BatchNorm removes (heads/shift_gauge.py): the biases before the three BatchNorms, and
        # the projection's last BatchNorm shift, which reaches the alignment's BatchNorm through a linear layer only.
        exact_zero_gradient(
            self.projection[0].bias, self.projection[4].bias, self.projection[5].bias, self.alignment[0].bias
        )
        self.out_dim = embed_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.alignment(self.projection(features))
