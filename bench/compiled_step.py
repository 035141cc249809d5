"""Training iterations eager against `torch.compile`d: does compiling a head's forward (and so its backward) pay?

For each compared head (runs/protocols/comparison.py's methods without the closed-form probe) on one cache, with
the dataset preset, the trainer's step runs on the same batches (read beforehand) from the same seed, twice:

- eager: the head as the trainer runs it;
- compiled: the head's forward through `torch.compile` (inductor; dynamic shapes, since the token length and the
  last batch's size vary), so that AOTAutograd compiles the backward too. The text branch's data-dependent parts
  (the token schedule, which reads the batch's lengths to the host, and the recurrence, a Python loop over those
  lengths: heads/token_lstm.py) run eagerly between compiled graphs (`torch.compiler.disable`): traced, they
  break the graph at every host read and recompile for every new set of lengths.

Reported per head: seconds per iteration (the median of the timed ones, after --warm-up iterations; for the
compiled head the warm-up holds the compilation, reported as its own figure), the compiled / eager ratio, the
graphs and graph breaks dynamo made, and the first iteration's step-one loss of both (equal within float rounding
with --same-random: inductor then draws dropout masks as eager does; without it they differ by their masks).
The run is what it is on this machine: compare only figures of one run.

    python -m bench.compiled_step --cache cache/files/mvsa-single.h5 --threads 1
    python -m bench.compiled_step --cache cache/files/mvsa-single.h5 --threads 1 --precision bfloat16
    python -m bench.compiled_step --synthetic --tiny --iterations 3     # seconds: the test's size
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.epoch_floor import training_iterations
from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.protocols.comparison import select_methods
from spp_scl.runs.train.trainer import open_splits

HEADS = "spp-scl,clmlf,mdse,text-only,image-only"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def eager_islands():
    """The text branch's data-dependent parts kept out of compiled graphs while the context is open."""
    from spp_scl.heads import hierarchical_attention, token_lstm

    names = {"real_token_lengths": hierarchical_attention, "bidirectional_lstm_mean": hierarchical_attention}
    saved = {name: getattr(module, name) for name, module in names.items()}
    saved_schedule = token_lstm.TokenSchedule.__dict__["from_lengths"]  # the classmethod itself, restored as it was
    try:
        for name, module in names.items():
            setattr(module, name, torch.compiler.disable(saved[name]))
        token_lstm.TokenSchedule.from_lengths = torch.compiler.disable(token_lstm.TokenSchedule.from_lengths)
        yield
    finally:
        for name, module in names.items():
            setattr(module, name, saved[name])
        token_lstm.TokenSchedule.from_lengths = saved_schedule


def compile_forward(model) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model.forward = torch.compile(model.forward, dynamic=True)


def run_iterations(config, splits, count: int, warm_up: int, compiled: bool, precision: str = "float32") -> dict:
    """`count` of the trainer's iterations (bench/epoch_floor.py's, from the config's seed; a small split's batches
    round again); seconds of the first `warm_up` together and of each later one, and the first iteration's report."""
    prepare = compile_forward if compiled else None
    runs = training_iterations(config, splits, precision, device=DEVICE, prepare=prepare)
    runs = list(itertools.islice(itertools.cycle(list(itertools.islice(runs, count))), count))
    started = time.perf_counter()
    first = runs[0]()
    for run in runs[1:warm_up]:
        run()
    synchronize()
    warm_up_seconds = time.perf_counter() - started
    seconds = []
    for run in runs[warm_up:]:
        started = time.perf_counter()
        run()
        synchronize()
        seconds.append(time.perf_counter() - started)
    found = {"warm_up_seconds": warm_up_seconds, "seconds": seconds, "first_loss": first["loss_step_one"]}
    if compiled:
        counters = torch._dynamo.utils.counters
        found["graphs"] = int(counters["stats"]["unique_graphs"])
        found["graph_breaks"] = int(sum(counters["graph_break"].values()))
    return found


def measure(
    cache: Path, methods: str, iterations: int, warm_up: int, same_random: bool, precision: str = "float32"
) -> list[dict]:
    base = resolve_config("mvsa-single")
    splits = open_splits(cache, base, in_memory=True)
    rows = []
    for method in select_methods(methods):
        config = base.replace(**method.overrides)
        eager = run_iterations(config, splits, warm_up + iterations, warm_up, compiled=False, precision=precision)
        with eager_islands(), torch._inductor.config.patch(fallback_random=same_random):
            compiled = run_iterations(config, splits, warm_up + iterations, warm_up, compiled=True, precision=precision)
        eager_median, compiled_median = statistics.median(eager["seconds"]), statistics.median(compiled["seconds"])
        row = {
            "method": method.key,
            "precision": precision,
            "eager_seconds": round(eager_median, 5),
            "compiled_seconds": round(compiled_median, 5),
            "compiled_over_eager": round(compiled_median / eager_median, 3),
            "compile_warm_up_seconds": round(compiled["warm_up_seconds"], 1),
            "eager_warm_up_seconds": round(eager["warm_up_seconds"], 1),
            "graphs": compiled["graphs"],
            "graph_breaks": compiled["graph_breaks"],
            "first_loss": [eager["first_loss"], compiled["first_loss"]],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cache", help="a feature cache (the real MVSA-S one)")
    source.add_argument("--synthetic", action="store_true", help="a generated cache of MVSA-Single's size")
    parser.add_argument("--tiny", action="store_true", help="with --synthetic: tiny shapes (a smoke run)")
    parser.add_argument("--methods", default=HEADS, help=f"heads (default {HEADS})")
    parser.add_argument("--iterations", type=int, default=40, help="timed iterations per head and mode")
    parser.add_argument("--warm-up", type=int, default=8, help="iterations before timing (the compilation)")
    parser.add_argument("--threads", type=int, help="torch threads (default torch's choice)")
    parser.add_argument("--same-random", action="store_true", help="inductor draws dropout masks as eager does")
    parser.add_argument(
        "--precision", default="float32", choices=("float32", "bfloat16"), help="both modes under this autocast"
    )
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        cache = Path(args.cache) if args.cache else Path(work) / "synthetic.h5"
        if args.synthetic:
            sizes = {"train": 200, "dev": 40} if args.tiny else {"train": 3611, "dev": 450}
            shapes = dict(layers=2, dim=16, map_shape=(8, 2, 2)) if args.tiny else {}
            write_synthetic_cache(cache, sizes, mean_tokens=31.0, **shapes)
        rows = measure(cache, args.methods, args.iterations, args.warm_up, args.same_random, args.precision)
    print(
        f"\n{DEVICE}, {torch.get_num_threads()} torch threads, {args.precision}; seconds per training iteration "
        f"(median of {args.iterations})"
    )
    print("| head | eager s | compiled s | compiled / eager | compile warm-up s | graphs / breaks |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['method']} | {row['eager_seconds']:.4f} | {row['compiled_seconds']:.4f} | "
            f"{row['compiled_over_eager']:.2f} | {row['compile_warm_up_seconds']} | "
            f"{row['graphs']} / {row['graph_breaks']} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": str(DEVICE), "threads": torch.get_num_threads(), "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
