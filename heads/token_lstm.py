"""The text branch's bias-free bidirectional LSTM, averaged over each text's real tokens, computed fast.

What it computes is exactly `nn.LSTM(bidirectional=True, bias=False)` run on a packed sequence of the real
tokens, with the outputs of both directions averaged over the real tokens (tests/test_heads_token_lstm.py
holds it to that reference within float rounding). How:

- The input projection of every real token, both directions, is one GEMM ([tokens, D] x [D, 8H]): the
  recurrence is left with only the small [rows, H] x [H, 4H] products.
- The backward direction reads each text's real tokens in reverse, so that both directions run forward in
  time over steps s = 0, 1, ... and a text of length n is active in steps 0..n-1 of both. With the rows
  sorted longest-first the active rows of every step are a prefix, so step s works on the first
  `batch_sizes[s]` rows only: nothing is computed for padding, as with packing.
- Only the sum over time of the hidden states is needed (the branch averages them), so no per-position
  output is unpacked, and the backward pass starts from one gradient per row and direction.
- The recurrence is one autograd node: per time step a handful of kernels on [2, rows, 4H] (both directions
  at once), forward and backward written out, and the recurrent weight gradient one GEMM at the end. The
  same kernels run with and without gradients, so a forward under torch.no_grad() is bit-identical to one
  with gradients (oneDNN's LSTM, which nn.LSTM uses without gradients, rounds differently).

The parameters stay those of the `nn.LSTM` module (weight_ih_l0, weight_hh_l0, *_reverse), so checkpoints
keep their keys and the module remains the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TokenSchedule:
    """The order in which the recurrence visits the real tokens of a padded batch: time-major, rows sorted by
    length (longest first, stable), so that the rows active at each step are a prefix. Position p of the
    schedule is (step s, sorted row r).

    order [B]: batch row of each sorted row
    batch_sizes: rows active at each step (non-increasing; the first is B)
    batch_rows [N], steps [N]: batch row and token position read at each schedule position (forward direction)
    reverse_positions [N]: for position (s, r), the position of (len_r - 1 - s, r), whose token the backward
        direction reads at (s, r)
    rows [N]: sorted row of each position
    previous [N - B]: for each position of a step s >= 1, the position of the same row at step s - 1
    """

    order: torch.Tensor
    lengths: torch.Tensor
    batch_sizes: list[int]
    batch_rows: torch.Tensor
    steps: torch.Tensor
    reverse_positions: torch.Tensor
    rows: torch.Tensor
    previous: torch.Tensor

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor) -> TokenSchedule:
        """lengths [B], each >= 1, on any device (the schedule is built on the CPU, then moved there)."""
        device = lengths.device
        lengths = lengths.to("cpu", torch.int64)
        order = torch.argsort(lengths, descending=True, stable=True)
        sorted_lengths = lengths[order]
        active = torch.arange(int(sorted_lengths[0])).unsqueeze(1) < sorted_lengths.unsqueeze(0)  # [steps, B]
        step_of, row_of = active.nonzero(as_tuple=True)  # time-major: step 0's rows, then step 1's, ...
        batch_sizes = active.sum(dim=1)
        starts = torch.cumsum(batch_sizes, 0) - batch_sizes
        later = step_of > 0
        return cls(
            order=order.to(device),
            lengths=lengths.to(device),
            batch_sizes=batch_sizes.tolist(),
            batch_rows=order[row_of].to(device),
            steps=step_of.to(device),
            reverse_positions=(starts[sorted_lengths[row_of] - 1 - step_of] + row_of).to(device),
            rows=row_of.to(device),
            previous=(starts[step_of[later] - 1] + row_of[later]).to(device),
        )


def bidirectional_lstm_mean(tokens: torch.Tensor, schedule: TokenSchedule, lstm: nn.LSTM) -> torch.Tensor:
    """tokens [N, D]: the real tokens in the schedule's order -> [B, 2H] in batch order: the mean over each text's
    real tokens of [forward output; backward output] of the one-layer, bias-free, bidirectional `lstm`."""
    if not (lstm.bidirectional and lstm.num_layers == 1 and not lstm.bias):
        raise ValueError("expected a one-layer, bidirectional, bias-free nn.LSTM")
    hidden = lstm.hidden_size
    # One GEMM projects every real token for both directions: [N, D] x [D, 8H].
    projected = tokens @ torch.cat([lstm.weight_ih_l0, lstm.weight_ih_l0_reverse]).transpose(0, 1)
    # The forward direction reads the positions in order, the backward one each text's tokens reversed.
    input_gates = torch.stack(
        [projected[:, : 4 * hidden], projected[:, 4 * hidden :].index_select(0, schedule.reverse_positions)]
    )
    recurrent_weights = torch.stack([lstm.weight_hh_l0, lstm.weight_hh_l0_reverse])
    sums = _Recurrence.apply(input_gates, recurrent_weights, schedule)  # [2, B, H], sorted rows
    sorted_text = torch.cat([sums[0], sums[1]], dim=1)
    text = torch.empty_like(sorted_text).index_copy_(0, schedule.order, sorted_text)
    return text / schedule.lengths.unsqueeze(1).to(text.dtype)


class _Recurrence(torch.autograd.Function):
    """(input gates [2, N, 4H] at the schedule's positions, recurrent weights [2, 4H, H], schedule) -> the sum
    over time of each row's hidden states, [2, B, H] (sorted rows). Gates in nn.LSTM's order i, f, g, o.

    Runs in float32 (or float64) whatever the autocast state: it is a small share of the work, and its state
    carries rounding from step to step."""

    @staticmethod
    def forward(ctx, input_gates, recurrent_weights, schedule):
        with torch.autocast(input_gates.device.type, enabled=False):
            dtype = torch.promote_types(input_gates.dtype, torch.float32)  # float64 stays float64
            input_gates, recurrent_weights = input_gates.to(dtype), recurrent_weights.to(dtype)
            gates, cells, cell_tanh, hidden = _forward_steps(input_gates, recurrent_weights, schedule.batch_sizes)
            sums = input_gates.new_zeros(2, schedule.batch_sizes[0], recurrent_weights.shape[2])
            sums.index_add_(1, schedule.rows, hidden)
        ctx.save_for_backward(recurrent_weights, gates, cells, cell_tanh, hidden)
        ctx.schedule = schedule
        return sums

    @staticmethod
    def backward(ctx, grad_sums):
        recurrent_weights, gates, cells, cell_tanh, hidden = ctx.saved_tensors
        schedule = ctx.schedule
        with torch.autocast(grad_sums.device.type, enabled=False):
            grad_pre = _backward_steps(
                grad_sums.to(gates.dtype).contiguous(), recurrent_weights, gates, cells, cell_tanh, schedule.batch_sizes
            )
            grad_weights = None
            if ctx.needs_input_grad[1]:
                # dW_hh = sum over positions of steps s >= 1 of d(pre-activation)^T h_{s-1}: one batched GEMM.
                first = schedule.batch_sizes[0]
                previous_hidden = hidden.index_select(1, schedule.previous)
                grad_weights = torch.bmm(grad_pre[:, first:].transpose(1, 2), previous_hidden)
        return grad_pre, grad_weights, None


def _forward_steps(input_gates: torch.Tensor, recurrent_weights: torch.Tensor, batch_sizes: list[int]):
    """The recurrence; returns the activated gates [2, N, 4H] and the cell states, their tanh and the hidden
    states [2, N, H] at every position (what the backward pass reads)."""
    h = recurrent_weights.shape[2]
    gates = torch.empty_like(input_gates)
    cells = input_gates.new_empty(2, input_gates.shape[1], h)
    cell_tanh, hidden = torch.empty_like(cells), torch.empty_like(cells)
    weights_t = recurrent_weights.transpose(1, 2)  # [2, H, 4H]
    # Per-step views, made once: step s holds positions starts[s] .. starts[s] + batch_sizes[s].
    inputs_at, gates_at = input_gates.split(batch_sizes, 1), gates.split(batch_sizes, 1)
    cells_at, tanh_at, hidden_at = (
        cells.split(batch_sizes, 1),
        cell_tanh.split(batch_sizes, 1),
        hidden.split(batch_sizes, 1),
    )
    for step, rows in enumerate(batch_sizes):
        if step == 0:
            pre = inputs_at[0]
        else:
            pre = torch.baddbmm(inputs_at[step], hidden_at[step - 1].narrow(1, 0, rows), weights_t)
        g = gates_at[step]
        torch.sigmoid(pre, out=g)
        input_gate, forget_gate, cell_gate, output_gate = g.split(h, 2)
        torch.tanh(pre.narrow(2, 2 * h, h), out=cell_gate)
        c = cells_at[step]
        if step == 0:
            torch.mul(input_gate, cell_gate, out=c)
        else:
            torch.mul(forget_gate, cells_at[step - 1].narrow(1, 0, rows), out=c)
            c.addcmul_(input_gate, cell_gate)
        torch.tanh(c, out=tanh_at[step])
        torch.mul(output_gate, tanh_at[step], out=hidden_at[step])
    return gates, cells, cell_tanh, hidden


def _backward_steps(grad_sums, recurrent_weights, gates, cells, cell_tanh, batch_sizes: list[int]) -> torch.Tensor:
    """Gradient of the summed hidden states with respect to the pre-activation gates at every position,
    [2, N, 4H] (the gradient of the input gates too)."""
    h = recurrent_weights.shape[2]
    # Slopes of the activations at every position at once: s (1 - s) for i, f, o; 1 - g^2 for g.
    slope = gates * (1.0 - gates)
    cell_gate = gates.narrow(2, 2 * h, h)
    torch.addcmul(torch.ones_like(cell_gate), cell_gate, cell_gate, value=-1.0, out=slope.narrow(2, 2 * h, h))
    # dh -> dc through h = o tanh(c): o (1 - tanh(c)^2), also at once.
    output_slope = gates.narrow(2, 3 * h, h) * (1.0 - cell_tanh * cell_tanh)
    grad_pre = torch.empty_like(gates)
    recurrent_hidden = torch.zeros_like(grad_sums)  # the gradient reaching h at step s from step s + 1
    recurrent_cell = torch.zeros_like(grad_sums)  # the gradient reaching c at step s from step s + 1
    gates_at, grad_at, slope_at = (
        gates.split(batch_sizes, 1),
        grad_pre.split(batch_sizes, 1),
        slope.split(batch_sizes, 1),
    )
    cells_at, tanh_at, output_slope_at = (
        cells.split(batch_sizes, 1),
        cell_tanh.split(batch_sizes, 1),
        output_slope.split(batch_sizes, 1),
    )
    for step in range(len(batch_sizes) - 1, -1, -1):
        rows = batch_sizes[step]
        input_gate, forget_gate, cell_gate, _ = gates_at[step].split(h, 2)
        grad_input, grad_forget, grad_cell_gate, grad_output = grad_at[step].split(h, 2)
        grad_hidden = grad_sums.narrow(1, 0, rows) + recurrent_hidden.narrow(1, 0, rows)
        torch.mul(grad_hidden, tanh_at[step], out=grad_output)
        grad_cell = torch.addcmul(recurrent_cell.narrow(1, 0, rows), grad_hidden, output_slope_at[step])
        torch.mul(grad_cell, cell_gate, out=grad_input)
        torch.mul(grad_cell, input_gate, out=grad_cell_gate)
        if step > 0:
            torch.mul(grad_cell, cells_at[step - 1].narrow(1, 0, rows), out=grad_forget)
            torch.mul(grad_cell, forget_gate, out=recurrent_cell.narrow(1, 0, rows))
        else:
            grad_forget.zero_()  # the cell state before the first step is zero
        grad_at[step].mul_(slope_at[step])
        if step > 0:
            torch.bmm(grad_at[step], recurrent_weights, out=recurrent_hidden.narrow(1, 0, rows))
    return grad_pre
