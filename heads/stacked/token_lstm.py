"""heads/token_lstm.py's bidirectional LSTM mean for T trials that read the same batch (one token schedule).

Trials that share a batch share its real tokens and so its schedule: the input projection of each trial is alone's
GEMM ([N, D] x [D, 8H]) and the recurrence runs both directions of every trial at once, as 2T
independent recurrences on the leading axis of heads/token_lstm.py's _Recurrence (per step the same kernels as
alone, on [2T, rows, 4H]). Trials with different batches (other seeds) run one such call per batch.
"""

from __future__ import annotations

import torch

from spp_scl.heads.token_lstm import _GATE_ORDER, TokenSchedule, _Recurrence


def stacked_lstm_mean(
    tokens: torch.Tensor,
    schedule: TokenSchedule,
    weight_ih: torch.Tensor,
    weight_ih_reverse: torch.Tensor,
    weight_hh: torch.Tensor,
    weight_hh_reverse: torch.Tensor,
) -> torch.Tensor:
    """tokens [T, N, D] in the schedule's order, weights [T, 4H, D] and [T, 4H, H] (nn.LSTM's, per trial)
    -> [T, B, 2H] in batch order: each trial's mean over each text's real tokens of both directions' outputs."""
    trials, positions, _ = tokens.shape
    hidden = weight_hh.shape[2]
    device = tokens.device
    # Each trial's input projection is alone's GEMM [N, D] x [D, 8H]: as one batched GEMM its backward rounds
    # differently from alone's on this CPU's BLAS.
    projected = torch.stack(
        [
            token_rows @ torch.cat([forward, reverse]).transpose(0, 1)
            for token_rows, forward, reverse in zip(tokens.unbind(0), weight_ih.unbind(0), weight_ih_reverse.unbind(0))
        ]
    )  # [T, N, 8H]
    # The same gather as alone, per trial: forward direction in order, backward direction reversed per text,
    # gates reordered to o, i, f, g.
    rows = torch.stack([torch.arange(positions, device=device), schedule.reverse_positions])
    blocks = torch.tensor(_GATE_ORDER, device=device)
    index = (rows * 8).unsqueeze(2) + (torch.arange(2, device=device) * 4).view(2, 1, 1) + blocks
    input_gates = projected.reshape(trials, positions * 8, hidden).index_select(1, index.flatten())
    input_gates = input_gates.view(trials * 2, positions, 4 * hidden)
    recurrent = torch.stack([weight_hh, weight_hh_reverse], dim=1)  # [T, 2, 4H, H]
    recurrent = recurrent.view(trials, 2, 4, hidden, hidden)[:, :, list(_GATE_ORDER)]
    recurrent = recurrent.reshape(trials * 2, 4 * hidden, hidden)
    sums = _Recurrence.apply(input_gates, recurrent, schedule).view(trials, 2, -1, hidden)  # sorted rows
    sorted_text = torch.cat([sums[:, 0], sums[:, 1]], dim=2)
    text = torch.empty_like(sorted_text).index_copy_(1, schedule.order, sorted_text)
    return text / schedule.lengths.view(1, -1, 1).to(text.dtype)
