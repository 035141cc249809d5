"""The matrix products a piece of training runs, recorded and replayed: the floor of its time on this machine.

`GemmRecorder` is a dispatch mode that notes every matrix product that passes through it (mm, addmm, bmm,
baddbmm, and the attention kernels as the two forward / four backward batched products that
torch.utils.flop_counter counts for them), with its shapes, operand layouts and dtype, and whether it ran
in a backward pass. `replay_seconds` then runs the same products back to back, nothing else, on random
operands of the same layouts: the time the epoch's dense GEMMs take at this machine's throughput at exactly
those shapes. FLOPs / that time is the throughput; the floor of an epoch is its FLOPs over the throughput.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


@dataclass(frozen=True)
class Gemm:
    """One product: `batch` independent [m, k] x [k, n] products (batch 0 = a plain mm)."""

    batch: int
    m: int
    k: int
    n: int
    dtype: torch.dtype
    a_transposed: bool  # stored as [k, m] (column-major), as a transposed view gives it
    b_transposed: bool

    @property
    def flops(self) -> int:
        return 2 * max(self.batch, 1) * self.m * self.k * self.n


@dataclass(frozen=True)
class RecordedGemm:
    gemm: Gemm
    backward: bool


def _matrix(tensor: torch.Tensor) -> tuple[int, int, bool]:
    rows, cols = tensor.shape[-2], tensor.shape[-1]
    transposed = tensor.stride(-1) != 1 and tensor.stride(-2) == 1
    return rows, cols, transposed


def _product(a: torch.Tensor, b: torch.Tensor, batched: bool, dtype: torch.dtype | None = None) -> Gemm:
    m, k, a_t = _matrix(a)
    _, n, b_t = _matrix(b)
    return Gemm(a.shape[0] if batched else 0, m, k, n, dtype or a.dtype, a_t, b_t)


def _attention_forward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> list[Gemm]:
    """Q K^T and P V as batched products over batch x heads (what flop_counter counts for attention)."""
    *outer, q_len, dim = query.shape
    k_len, v_dim = key.shape[-2], value.shape[-1]
    batch = int(torch.Size(outer).numel())
    return [
        Gemm(batch, q_len, dim, k_len, query.dtype, False, True),
        Gemm(batch, q_len, k_len, v_dim, query.dtype, False, False),
    ]


def _attention_backward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> list[Gemm]:
    """dO V^T, P^T dO, dS K, dS^T Q (flop_counter's four backward products for attention)."""
    *outer, q_len, dim = query.shape
    k_len, v_dim = key.shape[-2], value.shape[-1]
    batch = int(torch.Size(outer).numel())
    return [
        Gemm(batch, q_len, v_dim, k_len, query.dtype, False, True),
        Gemm(batch, k_len, q_len, v_dim, query.dtype, True, False),
        Gemm(batch, q_len, k_len, dim, query.dtype, False, False),
        Gemm(batch, k_len, q_len, dim, query.dtype, True, False),
    ]


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    *outer, q_len, dim = query_shape
    k_len, v_dim = key_shape[-2], value_shape[-1]
    batch = int(torch.Size(outer).numel())
    return 2 * batch * q_len * k_len * (dim + v_dim)


def _cpu_attention_backward_flops(grad_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return 2 * _cpu_attention_flops(query_shape, key_shape, value_shape)


# torch.utils.flop_counter has formulas for the GPU attention kernels, not for the CPU one that
# nn.MultiheadAttention uses here: these give it the same count (2 forward, 4 backward batched products).
CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}

_ATTENTION_FORWARD = {
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_cudnn_attention,
}
_ATTENTION_BACKWARD = {
    aten._scaled_dot_product_flash_attention_for_cpu_backward: 1,  # index of query in the arguments
    aten._scaled_dot_product_flash_attention_backward: 1,
    aten._scaled_dot_product_efficient_attention_backward: 1,
    aten._scaled_dot_product_cudnn_attention_backward: 1,
}


class GemmRecorder(TorchDispatchMode):
    """Records the matrix products run inside it (see the module docstring); `calls` in the order they ran."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[RecordedGemm] = []
        self.unrecorded: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        backward = torch._C._current_autograd_node() is not None
        gemms: list[Gemm] = []
        if packet is aten.mm:
            gemms = [_product(args[0], args[1], batched=False)]
        elif packet is aten.addmm:
            gemms = [_product(args[1], args[2], batched=False)]
        elif packet is aten.bmm:
            gemms = [_product(args[0], args[1], batched=True)]
        elif packet is aten.baddbmm:
            gemms = [_product(args[1], args[2], batched=True)]
        elif packet in _ATTENTION_FORWARD:
            gemms = _attention_forward(*args[:3])
        elif packet in _ATTENTION_BACKWARD:
            start = _ATTENTION_BACKWARD[packet]
            gemms = _attention_backward(*args[start : start + 3])
        elif packet in (aten.convolution, aten.convolution_backward, aten._convolution):
            self.unrecorded[str(packet)] += 1  # no head computes a convolution; counted so a report can say so
        self.calls.extend(RecordedGemm(gemm, backward) for gemm in gemms)
        return func(*args, **kwargs)

    def flops(self, backward: bool | None = None) -> int:
        return sum(call.gemm.flops for call in self.calls if backward is None or call.backward == backward)


def replay_seconds(gemms: list[Gemm], dtype: torch.dtype | None = None, repeats: int = 3) -> float:
    """The least time, over `repeats` runs, of running `gemms` back to back (optionally all in `dtype`).

    Operands are views into three shared random buffers (as large as the largest product needs), laid out
    (transposed or not) as recorded; products run into preallocated outputs, so the loop times the GEMM
    kernels and their calls, not allocation."""
    if not gemms:
        return 0.0
    specs = [g if dtype is None else Gemm(g.batch, g.m, g.k, g.n, dtype, g.a_transposed, g.b_transposed) for g in gemms]
    need_a = max(max(s.batch, 1) * s.m * s.k for s in specs)
    need_b = max(max(s.batch, 1) * s.k * s.n for s in specs)
    need_out = max(max(s.batch, 1) * s.m * s.n for s in specs)
    pools: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for spec in specs:
        if spec.dtype not in pools:
            pools[spec.dtype] = tuple(torch.randn(size).to(spec.dtype) for size in (need_a, need_b, need_out))
    prepared = {}
    plan = []
    for spec in specs:
        if spec not in prepared:
            pool_a, pool_b, pool_out = pools[spec.dtype]
            a = _operand(pool_a, spec.batch, spec.m, spec.k, spec.a_transposed)
            b = _operand(pool_b, spec.batch, spec.k, spec.n, spec.b_transposed)
            shape = (spec.batch, spec.m, spec.n) if spec.batch else (spec.m, spec.n)
            out = pool_out[: int(torch.Size(shape).numel())].view(shape)
            prepared[spec] = (torch.bmm if spec.batch else torch.mm, a, b, out)
        plan.append(prepared[spec])
    for function, a, b, out in plan[: min(len(plan), 50)]:  # warm-up
        function(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for function, a, b, out in plan:
            function(a, b, out=out)
        best = min(best, time.perf_counter() - started)
    return best


def _operand(pool: torch.Tensor, batch: int, rows: int, cols: int, transposed: bool) -> torch.Tensor:
    count = max(batch, 1) * rows * cols
    stored = (cols, rows) if transposed else (rows, cols)
    matrix = pool[:count].view(*((batch,) if batch else ()), *stored)
    return matrix.transpose(-1, -2) if transposed else matrix
