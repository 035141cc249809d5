"""Image reduction: squeezes a frozen backbone's feature map into one vector per image.

A 1x1 convolution brings the C channels (2048 for ResNet-50) down to the width of the text vector
before pooling, so both modalities enter their projections at the same size.
"""

from __future__ import annotations

import torch
from torch import nn


class ImageReduction(nn.Module):
    """image_maps [B, C, h, w] -> [B, out_channels]. Works for any C, h, w."""

    def __init__(self, in_channels: int, out_channels: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.out_dim = out_channels

    def forward(self, image_maps: torch.Tensor) -> torch.Tensor:
        return self.reduce(image_maps).mean(dim=(2, 3))
