"""Dropout as F.dropout computes it on the CPU, bit for bit, with its random draws made faster.

On the CPU, F.dropout(x, p) multiplies x by a noise tensor: `empty_like(x).bernoulli_(1 - p)` divided by 1 - p in
place (ATen's _dropout_impl; GPUs use a fused kernel instead). ATen's CPU `bernoulli_(q)` (torch 2.13) draws one
double-precision uniform per element, in the tensor's memory order, from the generator and keeps the element where
it falls below q: the same draws, in the same order, as `uniform_()` on a float64 tensor of the same layout,
compared with q. That skips bernoulli_'s per-element path: an image-branch mask (64 x 128 x 7 x 7) takes 1.92 ms
instead of 2.69 ms at 2 threads (docs/benchmarks.md; the epoch itself moved within its noise).

That the two draw alike is a fact of the ATen build, not a documented contract (older builds drew Bernoulli masks
through MKL). So it is checked once per process on a small draw (`uniform_draws_match_bernoulli`), and where it
does not hold, the masks are drawn the ATen way. tests/test_heads_dropout.py holds the module to F.dropout: the
noise, the product, its gradient and the generator's state afterwards, for every dtype, layout and edge value of p.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache
def uniform_draws_match_bernoulli() -> bool:
    """Whether this ATen build's CPU bernoulli_(q) keeps exactly the elements whose float64 uniform draw falls below
    q, consuming the generator alike (checked on 4,099 draws from two generators of one seed)."""
    bernoulli_stream, uniform_stream = torch.Generator().manual_seed(1234), torch.Generator().manual_seed(1234)
    expected = torch.empty(4099).bernoulli_(0.7, generator=bernoulli_stream)
    uniform = torch.empty(4099, dtype=torch.float64).uniform_(0, 1, generator=uniform_stream)
    same_state = torch.equal(bernoulli_stream.get_state(), uniform_stream.get_state())
    return same_state and torch.equal(torch.lt(uniform, 0.7).to(expected.dtype), expected)


def dropout_noise(
    shape: tuple[int, ...],
    p: float,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The tensor F.dropout multiplies a contiguous tensor of `shape` by, for dropout probability p: 1 / (1 - p)
    where an element is kept (probability 1 - p), else 0; ones for p = 0 and zeros for p = 1 (nothing drawn, as in
    F.dropout). On the CPU drawn from `generator` (default: the global CPU generator); elsewhere F.dropout's own
    draw (on a tensor of ones)."""
    if torch.device(device).type != "cpu":
        if generator is not None:
            raise ValueError("dropout noise from an explicit generator is drawn on the CPU only")
        return F.dropout(torch.ones(shape, dtype=dtype, device=device), p, training=True)
    _check_probability(p)
    if p == 0:
        return torch.ones(shape, dtype=dtype)
    if p == 1:
        return torch.zeros(shape, dtype=dtype)
    return _noise_like(torch.empty(shape, dtype=dtype), p, generator)


def _noise_like(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise for 0 < p < 1 in x's dtype and layout (empty_like keeps a permuted or channels-last tensor's strides,
    as ATen's noise does: the draws go in memory order, so another layout would put other masks on a non-contiguous
    x)."""
    keep = 1 - p  # a Python float, as ATen computes it in double
    if not uniform_draws_match_bernoulli():
        return torch.empty_like(x).bernoulli_(keep, generator=generator).div_(keep)
    uniform = torch.empty_like(x, dtype=torch.float64).uniform_(0, 1, generator=generator)
    return torch.lt(uniform, keep).to(x.dtype).div_(keep)


def _check_probability(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def dropout(x: torch.Tensor, p: float, training: bool = True, inplace: bool = False) -> torch.Tensor:
    """F.dropout(x, p, training, inplace), with the same result and the same random draws; the fast draws on the
    CPU, F.dropout itself on other devices."""
    _check_probability(p)
    if x.device.type != "cpu":
        return F.dropout(x, p, training, inplace)
    if p == 0 or not training or x.numel() == 0:  # nothing drawn, as in ATen
        return x
    if p == 1:
        return x.mul_(0.0) if inplace else x * x.new_zeros(())
    noise = _noise_like(x, p)
    return x.mul_(noise) if inplace else x * noise


class Dropout(nn.Dropout):
    """nn.Dropout (same arguments, same state dict: none) with the fast draws of `dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.inplace)
