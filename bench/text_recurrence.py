"""The text branch's BiLSTM, as SPP-SCL trains it, against nn.LSTM on the zero-padded batch (cuDNN on a GPU).

The head runs the recurrence on the real tokens only (heads/token_lstm.py: one GEMM for the input projection, then
per time step a few kernels on the rows still active). On a CPU that beat nn.LSTM, whose training path there runs
cell by cell; on a GPU each of those per-step kernels is a launch, and cuDNN's fused LSTM may be faster even though
it computes every padded position. Padding costs nothing in accuracy: the LSTM is bias-free, so a zero input on a
zero state leaves the state zero, and a right-padded text read backwards starts from its last real token in an exact
zero state; the forward direction's outputs past a text's end are masked out of the mean. Both paths get the same
real tokens ([N, D] in the schedule's order, needing a gradient) and give the [B, 2H] text vectors; this module
checks they agree and times forward + backward, and forward without gradients (the dev pass), per batch.

With --compiled, a third path: the compile-friendly recurrence (every step on every row, the state held at zero
past a row's end, so no shape depends on the lengths), the whole loop through torch.compile.

    python -m bench.text_recurrence --threads 1              # MVSA-Single's shapes: 64 texts, 1,916 tokens, 59 steps
    python -m bench.text_recurrence --json figures.json      # on a GPU when there is one (bench/device_check.py)
    python -m bench.text_recurrence --threads 1 --compiled   # also the compile-friendly recurrence, compiled
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import nn

from spp_scl.heads.token_lstm import TokenSchedule, bidirectional_lstm_mean


def batch_lengths(batch: int, tokens: int, longest: int, seed: int = 0) -> torch.Tensor:
    """`batch` text lengths in [1, longest], the first `longest`, summing to about `tokens`."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.rand(batch, generator=generator) * (longest - 1) + 1
    lengths = (lengths * tokens / lengths.sum()).round().clamp(1, longest).long()
    lengths[0] = longest
    return lengths


def padded_lstm_mean(tokens: torch.Tensor, schedule: TokenSchedule, lstm: nn.LSTM) -> torch.Tensor:
    """What bidirectional_lstm_mean computes, through nn.LSTM on the zero-padded [B, T, D] batch."""
    batch, steps = len(schedule.lengths), len(schedule.batch_sizes)
    padded = tokens.new_zeros(batch, steps, tokens.shape[1]).index_put((schedule.batch_rows, schedule.steps), tokens)
    outputs, _ = lstm(padded)  # [B, T, 2H]
    real = torch.arange(steps, device=tokens.device).unsqueeze(0) < schedule.lengths.unsqueeze(1)
    return (outputs * real.unsqueeze(2)).sum(1) / schedule.lengths.unsqueeze(1).to(outputs.dtype)


def masked_recurrence(gates: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """gates [T, 2, B, 4H] (nn.LSTM's gate order i, f, g, o; zero past each row's end), recurrent weights [2, 4H, H],
    mask [T, B] (1.0 on real tokens) -> the sum over time of each row's hidden states, [2, B, H]. Every step runs on
    every row, the state held at zero past a row's end: shapes that do not depend on the lengths, for a compiler."""
    hidden_size = weights.shape[2]
    hidden = gates.new_zeros(gates.shape[1], gates.shape[2], hidden_size)
    cell, total = torch.zeros_like(hidden), torch.zeros_like(hidden)
    recurrent = weights.transpose(1, 2)
    for step in range(gates.shape[0]):
        pre = gates[step] + torch.bmm(hidden, recurrent)
        input_gate, forget_gate, cell_gate, output_gate = pre.split(hidden_size, -1)
        real = mask[step].view(1, -1, 1)
        cell = (torch.sigmoid(forget_gate) * cell + torch.sigmoid(input_gate) * torch.tanh(cell_gate)) * real
        hidden = torch.sigmoid(output_gate) * torch.tanh(cell) * real
        total = total + hidden
    return total


_compiled_recurrence = None


def masked_lstm_mean(tokens: torch.Tensor, schedule: TokenSchedule, lstm: nn.LSTM, compiled: bool = False):
    """What bidirectional_lstm_mean computes, as `masked_recurrence` over the padded length (compiled whole by
    torch.compile when `compiled`: one graph per number of steps, the loop unrolled)."""
    global _compiled_recurrence
    hidden = lstm.hidden_size
    batch, steps = len(schedule.lengths), len(schedule.batch_sizes)
    projected = tokens @ torch.cat([lstm.weight_ih_l0, lstm.weight_ih_l0_reverse]).transpose(0, 1)  # [N, 8H]
    both = torch.stack([projected[:, : 4 * hidden], projected[schedule.reverse_positions, 4 * hidden :]], dim=1)
    gates = tokens.new_zeros(steps, batch, 2, 4 * hidden).index_put((schedule.steps, schedule.rows), both)
    sorted_lengths = schedule.lengths[schedule.order]
    mask = (torch.arange(steps, device=tokens.device).unsqueeze(1) < sorted_lengths.unsqueeze(0)).to(tokens.dtype)
    weights = torch.stack([lstm.weight_hh_l0, lstm.weight_hh_l0_reverse])
    recurrence = masked_recurrence
    if compiled:
        _compiled_recurrence = _compiled_recurrence or torch.compile(masked_recurrence, dynamic=False)
        recurrence = _compiled_recurrence
    sums = recurrence(gates.transpose(1, 2), weights, mask)  # [2, B, H], sorted rows
    sorted_text = torch.cat([sums[0], sums[1]], dim=1)
    text = torch.empty_like(sorted_text).index_copy(0, schedule.order, sorted_text)
    return text / schedule.lengths.unsqueeze(1).to(text.dtype)


def _seconds(function, repeats: int, device: torch.device) -> float:
    """The median of `repeats` timed calls, after two warm-up calls."""

    def finished() -> float:  # a GPU's queued kernels done
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    for _ in range(2):
        function()
    times = []
    for _ in range(repeats):
        started = finished()
        function()
        times.append(finished() - started)
    return sorted(times)[len(times) // 2]


def measure(batch=64, tokens=1916, longest=59, dim=768, hidden=64, repeats=20, device=None, compiled=False) -> dict:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True, bias=False).to(device)
    schedule = TokenSchedule.from_lengths(batch_lengths(batch, tokens, longest).to(device))
    real_tokens = torch.randn(len(schedule.steps), dim, device=device, requires_grad=True)
    paths = {"schedule": bidirectional_lstm_mean, "padded": padded_lstm_mean}
    with torch.no_grad():
        reference, padded = (path(real_tokens, schedule, lstm) for path in paths.values())
    compiled_figures = {}
    if compiled:  # the compile-friendly recurrence through torch.compile: compiled here, forward and backward
        paths["masked_compiled"] = lambda *inputs: masked_lstm_mean(*inputs, compiled=True)
        started = time.perf_counter()
        masked = masked_lstm_mean(real_tokens, schedule, lstm, compiled=True)
        masked.sum().backward()
        compiled_figures = {
            "masked_compile_seconds": round(time.perf_counter() - started, 1),
            "masked_max_abs_difference": float((reference - masked.detach()).abs().max()),
        }
    row = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "texts": batch,
        "tokens": len(schedule.steps),
        "steps": len(schedule.batch_sizes),
        "dim": dim,
        "hidden": hidden,
        "max_abs_difference": float((reference - padded).abs().max()),
    }
    for name, path in paths.items():

        def training(path=path):
            path(real_tokens, schedule, lstm).sum().backward()

        def inference(path=path):
            with torch.no_grad():
                path(real_tokens, schedule, lstm)

        for mode, function in (("train", training), ("no_grad", inference)):
            row[f"{name}_{mode}_ms"] = round(1000 * _seconds(function, repeats, device), 3)
            if name != "schedule":  # the head's own path is timed first
                row[f"{name}_speedup_{mode}"] = round(row[f"schedule_{mode}_ms"] / row[f"{name}_{mode}_ms"], 2)
    return {**row, **compiled_figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--device", help="cpu or cuda (default cuda when there is one)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=1916, help="real tokens in the batch (MVSA-Single: 1,916)")
    parser.add_argument("--longest", type=int, default=59, help="the longest text, in tokens")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--compiled", action="store_true", help="also the masked recurrence through torch.compile (minutes to compile)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    row = measure(
        args.batch, args.tokens, args.longest, args.dim, args.hidden, args.repeats, args.device, args.compiled
    )
    print(json.dumps(row, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(row, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
