"""Image reduction: squeezes a frozen backbone's feature map into one vector per image.

A 1x1 convolution brings the C channels (2048 for ResNet-50) down to the width of the text vector
before pooling, so both modalities enter their projections at the same size.

A 1x1 convolution is a matrix product over channels at every map position, and that is how it is computed:
one GEMM [B * h * w, C] x [C, out], on a channels-last view of the maps (free when the maps are stored
channels-last, as the cache reader gives them; a copy otherwise). Batch normalisation, ReLU, dropout and the
mean over positions then run on that [B * h * w, out] layout. The modules stay nn.Conv2d, nn.BatchNorm2d and
nn.Dropout (the checkpoint keys, and the reference the tests compare with), and the dropout mask is drawn
exactly as nn.Dropout draws it on the [B, out, h, w] activation, so a seed gives the same masks as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spp_scl.heads.shift_gauge import exact_zero_gradient


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
        exact_zero_gradient(self.reduce[0].bias)  # the BatchNorm after it removes it (heads/shift_gauge.py)
        self.out_dim = out_channels

    def forward(self, image_maps: torch.Tensor) -> torch.Tensor:
        convolution, norm, _, dropout = self.reduce
        batch, channels, height, width = image_maps.shape
        out = convolution.out_channels
        # Maps may come in their stored float16: converted here, once, to the weights' dtype.
        positions = image_maps.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
        positions = positions.to(convolution.weight.dtype)
        reduced = torch.addmm(convolution.bias, positions, convolution.weight.view(out, channels).transpose(0, 1))
        # The [B, h, w, out] result seen as [B, out, h, w] channels-last: BatchNorm2d and ReLU as modules.
        reduced = reduced.view(batch, height, width, out).permute(0, 3, 1, 2)
        reduced = torch.relu(norm(reduced)).permute(0, 2, 3, 1).reshape(batch, height * width, out)
        if self.training and dropout.p > 0:
            # nn.Dropout's mask for the [B, out, h, w] activation (F.dropout of ones: the same random draws in
            # the same order as on the contiguous activation of a convolution), copied channels-last once so that
            # the product and its backward run on two contiguous operands.
            mask = F.dropout(reduced.new_ones(batch, out, height, width), dropout.p, training=True)
            reduced = reduced * mask.permute(0, 2, 3, 1).reshape(batch, height * width, out)
        return reduced.mean(dim=1)
