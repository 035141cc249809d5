"""`config.precision`, the one precision setting: float32, or bfloat16 / float16 autocast of the matrix products.

Under bfloat16 autocast the GEMMs (linear layers, the 1x1 convolution's product, the LSTM's input projection,
attention) take bfloat16 operands and accumulate in float32; weights, gradients, the optimiser state and the
LSTM recurrence (heads/token_lstm.py) stay float32. That halves the bytes the big products read and, on
hardware with bfloat16 units, roughly doubles their throughput. Without such units it is the opposite: on a
CPU without AVX512-BF16 or AMX, PyTorch's bfloat16 GEMM is an emulation tens of times slower than float32
(measured by bench/epoch_floor.py), so asking for it there is refused rather than silently slow.

float16 is for GPUs without bfloat16 (before NVIDIA's Ampere): its range is narrow (largest 65504, smallest normal
6e-5), so the loss is scaled before backward and the step is skipped when a gradient overflowed
(LossScaledOptimizer, PyTorch's GradScaler). On a CPU it is refused: no CPU runs float16 GEMMs faster than float32.
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
        # NVIDIA's compute capability 8 (Ampere) and later, or ROCm. torch.cuda.is_bf16_supported() also says yes
        # for a V100 or T4, which can hold bfloat16 tensors but multiply them slowly: float16 is for those.
        if not torch.cuda.is_available():
            return False
        return bool(torch.version.hip) or torch.cuda.get_device_properties(device).major >= 8
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def check_precision(precision: str, device: torch.device | str) -> None:
    """Refuses bfloat16 where it would be slow (see the module docstring)."""
    if precision == "float16" and torch.device(device).type != "cuda":
        raise InputError(
            f"precision float16 needs a GPU; on this {torch.device(device).type} it would be slower than float32 and "
            "overflow-prone: use precision float32 (or bfloat16 where it is fast)"
        )
    if precision == "bfloat16" and not fast_bfloat16(device):
        raise InputError(
            f"precision bfloat16 needs a GPU or a CPU with AVX512-BF16 or AMX; this {torch.device(device).type} has "
            "neither, and its bfloat16 matrix products run tens of times slower than float32: use precision float32"
        )


def autocast(precision: str, device: torch.device | str):
    """The context the forward passes (and the losses) run in: bfloat16 autocast, or nothing for float32."""
    if precision == "float32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float16
    return torch.autocast(torch.device(device).type, dtype=dtype)


class LossScaledOptimizer:
    """An optimiser for float16 training, in the place of the plain one: `backward` scales the loss so that small
    gradients do not flush to zero, and `step` unscales them, skips the step when one overflowed and adapts the
    scale (torch.amp.GradScaler). A scale is a power of two, so an unskipped step is the plain step exactly."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device | str) -> None:
        self.optimizer = optimizer
        self.scaler = torch.amp.GradScaler(torch.device(device).type)

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()


def scaled_for(precision: str, optimizer: torch.optim.Optimizer, device: torch.device | str):
    """The optimiser the training step uses: loss-scaled under float16, the plain one otherwise."""
    return LossScaledOptimizer(optimizer, device) if precision == "float16" else optimizer
