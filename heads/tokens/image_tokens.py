"""Image tokens: one token per position of the cached feature map, projected to the model width.

A 7 x 7 map gives 49 tokens. No position embedding is added: the tokens only ever meet attention and
pooling that treat them as a set, and a frozen CNN's map vectors already describe their surroundings.
"""

from __future__ import annotations

import torch
from torch import nn


class ImageTokens(nn.Module):
    """image_maps [B, C, h, w] -> tokens [B, h * w, dim]."""

    def __init__(self, in_channels: int, dim: int, dropout: float = 0.2) -> None:
        super().__init__()
        # LayerNorm after the projection puts maps of any backbone (ResNet, EfficientNet, ViT grids)
        # on the scale the Transformer layers expect.
        self.project = nn.Sequential(nn.Linear(in_channels, dim), nn.LayerNorm(dim), nn.Dropout(dropout))

    def forward(self, image_maps: torch.Tensor) -> torch.Tensor:
        return self.project(image_maps.flatten(2).transpose(1, 2).to(self.project[0].weight.dtype))
