"""`config.precision`: float32, or bfloat16 autocast of the matrix products where bfloat16 is fast.

Under bfloat16 autocast the GEMMs (linear layers, the 1x1 convolution's product, the LSTM's input projection,
attention) take bfloat16 operands and accumulate in float32; weights, gradients, the optimiser state and the
LSTM recurrence (heads/token_lstm.py) stay float32. That halves the bytes the big products read and, on
hardware with bfloat16 units, roughly doubles their throughput. Without such units it is the opposite: on a
CPU without AVX512-BF16 or AMX, PyTorch's bfloat16 GEMM is an emulation tens of times slower than float32
(measured by bench/epoch_floor.py), so asking for it there is refused rather than silently slow.
"""

from __future__ import annotations

import contextlib

import torch

from spp_scl.core.errors import InputError


def fast_bfloat16(device: torch.device | str) -> bool:
    """Whether bfloat16 matrix products are fast on `device`: a GPU that supports them, or a CPU on which oneDNN
    has bfloat16 instructions (AVX512-BF16 or AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def check_precision(precision: str, device: torch.device | str) -> None:
    """Refuses bfloat16 where it would be slow (see the module docstring)."""
    if precision == "bfloat16" and not fast_bfloat16(device):
        raise InputError(
            f"precision bfloat16 needs a GPU or a CPU with AVX512-BF16 or AMX; this {torch.device(device).type} has "
            "neither, and its bfloat16 matrix products run tens of times slower than float32: use precision float32"
        )


def autocast(precision: str, device: torch.device | str):
    """The context the forward passes (and the losses) run in: bfloat16 autocast, or nothing for float32."""
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
