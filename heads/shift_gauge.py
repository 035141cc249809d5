"""Parameters whose exact gradient is zero in training: shifts that a following BatchNorm removes.

A bias added right before a BatchNorm (a linear layer's or the 1x1 convolution's), and a BatchNorm's own shift
when only a linear layer separates it from the next BatchNorm, move every sample of a batch by the same amount;
the next BatchNorm, normalising with the batch's own statistics in training, subtracts it again. So the loss does
not depend on them and their gradient is exactly zero. Computed in float32 it is rounding noise of ~1e-9, and
AdamW divides each step by the gradient's running scale (eps 1e-8), which turns that noise into steps of a
sizeable share of the learning rate in a random direction (on a test head's first step: median 0.16 lr, up to
0.46 lr): such a parameter random-walks, its BatchNorm's running mean
follows it with a lag, and eval-mode outputs move by ~1e-3 depending on how the sums were rounded (another CPU,
another BLAS, or trials trained as a group). Setting their gradient to its exact value, zero, removes that
noise and changes nothing else: the trained function is the same, weight decay still applies to them.
"""

from __future__ import annotations

import torch

_MARK = "spp_scl_shift_gauge"


def exact_zero_gradient(*params: torch.Tensor) -> None:
    """Marks `params` as shifts a following BatchNorm removes: their gradient is replaced by zeros."""
    for param in params:
        param.register_hook(torch.zeros_like)
        setattr(param, _MARK, True)


def is_shift_gauge(param: torch.Tensor) -> bool:
    return getattr(param, _MARK, False)
