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
    positions = tokens.shape[0]
    # One GEMM projects every real token for both directions: [N, D] x [D, 8H].
    projected = tokens @ torch.cat([lstm.weight_ih_l0, lstm.weight_ih_l0_reverse]).transpose(0, 1)
    # One gather puts them where the recurrence reads them: [2, N, 4H], the forward direction at the positions
    # in order, the backward one at each text's tokens reversed, gates reordered to o, i, f, g (see _GATE_ORDER).
    rows = torch.stack([torch.arange(positions, device=tokens.device), schedule.reverse_positions])
    blocks = torch.tensor(_GATE_ORDER, device=tokens.device)
    index = (rows * 8).unsqueeze(2) + (torch.arange(2, device=tokens.device) * 4).view(2, 1, 1) + blocks
    input_gates = projected.reshape(positions * 8, hidden).index_select(0, index.flatten())
    input_gates = input_gates.view(2, positions, 4 * hidden)
    recurrent_weights = torch.stack([lstm.weight_hh_l0, lstm.weight_hh_l0_reverse])
    recurrent_weights = recurrent_weights.view(2, 4, hidden, hidden)[:, list(_GATE_ORDER)].reshape(
        2, 4 * hidden, hidden
    )
    sums = _Recurrence.apply(input_gates, recurrent_weights, schedule)  # [2, B, H], sorted rows
    sorted_text = torch.cat([sums[0], sums[1]], dim=1)
    text = torch.empty_like(sorted_text).index_copy_(0, schedule.order, sorted_text)
    return text / schedule.lengths.unsqueeze(1).to(text.dtype)


# nn.LSTM stores its gates as i, f, g, o; the recurrence keeps them as o, i, f, g: the three sigmoid gates (o, i, f)
# side by side for one activation kernel, and the three whose gradient is proportional to the cell's (i, f, g)
# side by side for one kernel in the backward pass.
_GATE_ORDER = (3, 0, 1, 2)


class _Recurrence(torch.autograd.Function):
    """(input gates [2, N, 4H] at the schedule's positions, recurrent weights [2, 4H, H], schedule) -> the sum
    over time of each row's hidden states, [2, B, H] (sorted rows). Gates in the order o, i, f, g. The leading
    axis may hold any number of independent recurrences that share the schedule.

    Runs in float32 (or float64) whatever the autocast state: it is a small share of the work, and its state
    carries rounding from step to step."""

    @staticmethod
    def forward(ctx, input_gates, recurrent_weights, schedule):
        with torch.autocast(input_gates.device.type, enabled=False):
            dtype = torch.promote_types(input_gates.dtype, torch.float32)  # float64 stays float64
            input_gates, recurrent_weights = input_gates.to(dtype), recurrent_weights.to(dtype)
            gates, cells, cell_tanh, hidden = _forward_steps(input_gates, recurrent_weights, schedule.batch_sizes)
            sums = input_gates.new_zeros(len(input_gates), schedule.batch_sizes[0], recurrent_weights.shape[2])
            sums.index_add_(1, schedule.rows, hidden)
        ctx.save_for_backward(recurrent_weights, gates, cells, cell_tanh, hidden)
        ctx.schedule = schedule
        return sums

    @staticmethod
    def backward(ctx, grad_sums):
        recurrent_weights, gates, cells, cell_tanh, hidden = ctx.saved_tensors
        schedule = ctx.schedule
        with torch.autocast(grad_sums.device.type, enabled=False):
            grad_sums = grad_sums.to(gates.dtype).contiguous()
            grad_pre = _backward_steps(grad_sums, recurrent_weights, gates, cells, cell_tanh, schedule)
            grad_weights = None
            if ctx.needs_input_grad[1]:
                # dW_hh = sum over positions of steps s >= 1 of d(pre-activation)^T h_{s-1}: one batched GEMM.
                first = schedule.batch_sizes[0]
                previous_hidden = hidden.index_select(1, schedule.previous)
                grad_weights = torch.bmm(grad_pre[:, first:].transpose(1, 2), previous_hidden)
        return grad_pre, grad_weights, None


def _steps(tensor: torch.Tensor, batch_sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """Per-step views of a [2, N, ...] buffer: step s holds positions starts[s] .. starts[s] + batch_sizes[s]."""
    return tensor.split(batch_sizes, 1)


def _previous(per_step: tuple[torch.Tensor, ...], batch_sizes: list[int]) -> list[torch.Tensor | None]:
    """For each step s >= 1, the rows of step s - 1 that are still active at s (None at step 0)."""
    return [None] + [per_step[step - 1].narrow(1, 0, rows) for step, rows in enumerate(batch_sizes) if step]


def _forward_steps(input_gates: torch.Tensor, recurrent_weights: torch.Tensor, batch_sizes: list[int]):
    """The recurrence; returns the activated gates [2, N, 4H] (o, i, f, g) and the cell states, their tanh and the
    hidden states [2, N, H] at every position (what the backward pass reads). Every per-step view is made before
    the loop, which then runs seven kernels per step and nothing else."""
    h = recurrent_weights.shape[2]
    gates = torch.empty_like(input_gates)
    cells = input_gates.new_empty(len(input_gates), input_gates.shape[1], h)
    cell_tanh, hidden = torch.empty_like(cells), torch.empty_like(cells)
    weights_t = recurrent_weights.transpose(1, 2)  # [2, H, 4H]
    inputs_at, gates_at = _steps(input_gates, batch_sizes), _steps(gates, batch_sizes)
    sigmoid_at, cell_gate_at = _steps(gates[:, :, : 3 * h], batch_sizes), _steps(gates[:, :, 3 * h :], batch_sizes)
    output_at, input_at, forget_at = (_steps(gates[:, :, k * h : (k + 1) * h], batch_sizes) for k in range(3))
    cells_at, tanh_at, hidden_at = (
        _steps(cells, batch_sizes),
        _steps(cell_tanh, batch_sizes),
        _steps(hidden, batch_sizes),
    )
    previous_cells, previous_hidden = _previous(cells_at, batch_sizes), _previous(hidden_at, batch_sizes)
    for step in range(len(batch_sizes)):
        if step == 0:  # h and c start at zero
            gates_at[0].copy_(inputs_at[0])
        else:
            torch.baddbmm(inputs_at[step], previous_hidden[step], weights_t, out=gates_at[step])
        sigmoid_at[step].sigmoid_()
        cell_gate_at[step].tanh_()
        if step == 0:
            torch.mul(input_at[0], cell_gate_at[0], out=cells_at[0])
        else:
            torch.mul(forget_at[step], previous_cells[step], out=cells_at[step])
            cells_at[step].addcmul_(input_at[step], cell_gate_at[step])
        torch.tanh(cells_at[step], out=tanh_at[step])
        torch.mul(output_at[step], tanh_at[step], out=hidden_at[step])
    return gates, cells, cell_tanh, hidden


def _backward_steps(grad_sums, recurrent_weights, gates, cells, cell_tanh, schedule: TokenSchedule) -> torch.Tensor:
    """Gradient of the summed hidden states with respect to the pre-activation gates at every position,
    [2, N, 4H] (the gradient of the input gates too).

    Everything that does not depend on the incoming gradient is computed for all positions at once before the
    loop: with dc the gradient reaching the cell state and dh the one reaching the hidden state at a position,
    d(pre i, f, g) = dc * [g s'(i), c_prev s'(f), i (1 - g^2)], d(pre o) = dh * tanh(c) s'(o), and
    dc = dc_next + dh * o (1 - tanh(c)^2); so each step runs five kernels."""
    batch_sizes = schedule.batch_sizes
    h = recurrent_weights.shape[2]
    recurrences, positions, first = gates.shape[0], gates.shape[1], batch_sizes[0]
    output_gate, input_gate, forget_gate, cell_gate = gates.view(recurrences, positions, 4, h).unbind(2)
    previous_cells = torch.zeros_like(cells)
    previous_cells[:, first:] = cells.index_select(1, schedule.previous)
    partners = torch.stack(
        [
            cell_gate * input_gate * (1.0 - input_gate),
            previous_cells * forget_gate * (1.0 - forget_gate),
            cell_gate.mul(cell_gate).neg_().add_(1.0).mul_(input_gate),  # i (1 - g^2)
        ],
        dim=2,
    )  # [2, N, 3, H]
    output_partner = cell_tanh * output_gate * (1.0 - output_gate)
    output_slope = cell_tanh.mul(cell_tanh).neg_().add_(1.0).mul_(output_gate)  # o (1 - tanh(c)^2)
    grad_pre = torch.empty_like(gates)
    grad_gates = grad_pre.view(recurrences, positions, 4, h)
    # Running gradients per row: dh starts as the incoming gradient (a row's last step gets nothing from a later
    # one), and step s writes the rows still active at s - 1; dc likewise, from zero.
    grad_hidden, grad_cell = grad_sums.clone(), torch.zeros_like(grad_sums)
    grad_at, grad_three_at = _steps(grad_pre, batch_sizes), _steps(grad_gates[:, :, 1:], batch_sizes)  # i, f, g
    grad_output_at = _steps(grad_gates[:, :, 0], batch_sizes)
    partners_at, output_partner_at = _steps(partners, batch_sizes), _steps(output_partner, batch_sizes)
    output_slope_at, forget_at = _steps(output_slope, batch_sizes), _steps(forget_gate, batch_sizes)
    incoming_at = [grad_sums.narrow(1, 0, rows) for rows in batch_sizes]
    hidden_at = [grad_hidden.narrow(1, 0, rows) for rows in batch_sizes]
    cell_at = [grad_cell.narrow(1, 0, rows) for rows in batch_sizes]
    for step in range(len(batch_sizes) - 1, -1, -1):
        hidden, cell = hidden_at[step], cell_at[step]
        cell.addcmul_(hidden, output_slope_at[step])
        torch.mul(cell.unsqueeze(2), partners_at[step], out=grad_three_at[step])
        torch.mul(hidden, output_partner_at[step], out=grad_output_at[step])
        if step > 0:
            cell.mul_(forget_at[step])  # what reaches c at step s - 1
            torch.baddbmm(incoming_at[step], grad_at[step], recurrent_weights, out=hidden)  # dh at step s - 1
    return grad_pre
