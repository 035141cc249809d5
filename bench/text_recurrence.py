"""The text branch's BiLSTM, as SPP-SCL trains it, against nn.LSTM on the zero-padded batch (cuDNN on a GPU).

The head runs the recurrence on the real tokens only (heads/token_lstm.py: one GEMM for the input projection, then
per time step a few kernels on the rows still active). On a CPU that beat nn.LSTM, whose training path there runs
cell by cell; on a GPU each of those per-step kernels is a launch, and cuDNN's fused LSTM may be faster even though
it computes every padded position. Padding costs nothing in accuracy: the LSTM is bias-free, so a zero input on a
zero state leaves the state zero, and a right-padded text read backwards starts from its last real token in an exact
zero state; the forward direction's outputs past a text's end are masked out of the mean. Both paths get the same
real tokens ([N, D] in the schedule's order, needing a gradient) and give the [B, 2H] text vectors; this module
checks they agree and times forward + backward, and forward without gradients (the dev pass), per batch.

    python -m bench.text_recurrence --threads 1              # MVSA-Single's shapes: 64 texts, 1,916 tokens, 59 steps
    python -m bench.text_recurrence --json figures.json      # on a GPU when there is one (bench/device_check.py)
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


def _seconds(function, repeats: int, device: torch.device) -> float:
    """The median of `repeats` timed calls, after two warm-up calls."""
    for _ in range(2):
        function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def measure(batch=64, tokens=1916, longest=59, dim=768, hidden=64, repeats=20, device=None) -> dict:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True, bias=False).to(device)
    schedule = TokenSchedule.from_lengths(batch_lengths(batch, tokens, longest).to(device))
    real_tokens = torch.randn(len(schedule.steps), dim, device=device, requires_grad=True)
    paths = {"schedule": bidirectional_lstm_mean, "padded": padded_lstm_mean}
    with torch.no_grad():
        reference, padded = (path(real_tokens, schedule, lstm) for path in paths.values())
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

        row[f"{name}_train_ms"] = round(1000 * _seconds(training, repeats, device), 3)
        row[f"{name}_no_grad_ms"] = round(1000 * _seconds(inference, repeats, device), 3)
    row["padded_speedup_train"] = round(row["schedule_train_ms"] / row["padded_train_ms"], 2)
    row["padded_speedup_no_grad"] = round(row["schedule_no_grad_ms"] / row["padded_no_grad_ms"], 2)
    return row


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
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    row = measure(args.batch, args.tokens, args.longest, args.dim, args.hidden, args.repeats, args.device)
    print(json.dumps(row, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(row, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
