"""Seconds per training epoch of every compared head against the floor this machine's GEMM throughput sets.

For each head (SPP-SCL cmf-bank and cmf-batch, CLMLF-style, MDSE-style, text only, image only: the methods
of runs/protocols/comparison.py) on one cache, with the dataset preset:

1. timed: spp_scl.runs.train.trainer.train for --epochs epochs; the seconds per epoch the trainer logs (dev pass included);
2. counted: the same training again (same seed, so the same batches, dropout masks and two-step decisions)
   under torch.utils.flop_counter.FlopCounterMode and a recorder of every matrix product (bench/gemm_calls.py):
   the FLOPs of each epoch as it actually ran, forward and backward, both forwards of the two-step rule, step
   two's backward when it ran; the dev pass is counted on its own;
3. floor: epoch 1's matrix products replayed back to back on random operands of the same shapes and layouts
   (least of 3 runs) give this machine's float32 GEMM throughput at the epoch's shapes; an epoch's floor is
   its FLOPs / that throughput. The bfloat16 throughput at the same shapes is estimated from a FLOP-weighted
   sample of the products (--bf16-samples; 0 skips it): a CPU without AVX512-BF16/AMX runs bfloat16 GEMMs
   tens of times slower than float32;
4. with --bf16-iterations N: N training iterations timed in float32 and under bfloat16 autocast, the trainer's
   step outside the trainer (which refuses bfloat16 where it is slow).
5. with --profile-iterations N: where the time above the floor goes. N training iterations (the trainer's step
   outside the trainer, inputs read beforehand) are timed, then run again from the same seed under
   torch.profiler and under the GEMM recorder: their wall time against their matrix products replayed back to
   back, the products' self time in situ, and the other operators' self time by share.

Epoch 1 includes warm-up, so the summary takes the least ratio of the later epochs (and says which). The
load average is printed before and after each timed run: other processes on the machine inflate times, not
FLOP counts.

    python -m bench.epoch_floor --cache cache/files/mvsa-single.h5 --threads 2
    python -m bench.epoch_floor --synthetic --threads 2        # an MVSA-Single-sized generated cache
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.gemm_calls import CPU_ATTENTION_FLOPS, Gemm, GemmRecorder, replay_seconds
from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.heads.head_kinds import training_step_for
from spp_scl.heads.precision import autocast
from spp_scl.heads.presets import DATASET_PRESETS, resolve_config
from spp_scl.runs.protocols.comparison import select_methods
from spp_scl.runs.train.checkpoint import build_head
from spp_scl.runs.train.trainer import open_splits, train
from spp_scl.runs.train.trial_run import head_shapes, predict
from spp_scl.runs.train.view_feed import feature_inputs

SYNTHETIC_SIZES = {"train": 3611, "dev": 450}  # MVSA-Single's train / dev after extraction
# The heads trained epoch by epoch (runs/protocols/comparison.py's methods without the closed-form linear probe).
EPOCH_HEADS = "spp-scl,spp-scl-faithful,clmlf,mdse,text-only,image-only"


def count_training(cache, config, splits, work: Path) -> tuple[list[dict], list[float]]:
    """Train `config` under the FLOP counter and the GEMM recorder; per epoch: FLOPs (total, forward, backward)
    and the recorded products, dev pass included. Also returns the logged losses, to check the timed run."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    recorder = GemmRecorder()
    marks = []

    def mark(_line: str) -> None:
        marks.append((counter.get_total_flops(), len(recorder.calls)))

    with counter, recorder:
        train(cache, config, work, log=mark, splits=splits)
    epochs, previous = [], (0, 0)
    for total, calls in marks[: config.epochs]:
        recorded = recorder.calls[previous[1] : calls]
        epochs.append(
            {
                "flops": total - previous[0],
                "forward_flops": sum(c.gemm.flops for c in recorded if not c.backward),
                "backward_flops": sum(c.gemm.flops for c in recorded if c.backward),
                "gemms": [c.gemm for c in recorded],
            }
        )
        previous = (total, calls)
    return epochs, _losses(work)


def count_dev_pass(config, splits) -> int:
    """FLOPs of one dev pass (eval mode: the same every epoch)."""
    torch.manual_seed(config.seed)
    model = build_head(config, head_shapes(splits["train"]))
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter:
        predict(model, splits["dev"], config.batch_size, "cpu")
    return counter.get_total_flops()


def bf16_seconds_per_flop(gemms: list[Gemm], samples: int, seed: int = 0) -> float:
    """Mean of 1 / throughput over products drawn with probability proportional to their FLOPs: times the
    total FLOPs, an unbiased estimate of the time of all of them in bfloat16."""
    rng = random.Random(seed)
    drawn = rng.choices(gemms, weights=[g.flops for g in gemms], k=samples)
    per_flop = []
    for gemm in drawn:
        spec = Gemm(gemm.batch, gemm.m, gemm.k, gemm.n, torch.bfloat16, gemm.a_transposed, gemm.b_transposed)
        per_flop.append(replay_seconds([spec], repeats=1) / spec.flops)
    return sum(per_flop) / len(per_flop)


def training_iterations(config, splits, precision: str = "float32", device="cpu", prepare=None):
    """The trainer's iterations (its step, fused AdamW, batches) outside the trainer, from the config's seed:
    yields a callable per iteration of one epoch that runs it (under `precision`'s autocast) on inputs read
    beforehand and returns the step's report. `prepare(model)`, when given, is applied to the head before its
    optimiser is made (bench/compiled_step.py compiles it there)."""
    torch.manual_seed(config.seed)
    model = build_head(config, head_shapes(splits["train"])).to(device).train()
    if prepare is not None:
        prepare(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    step = training_step_for(config)
    order = torch.Generator().manual_seed(config.seed)
    for batch in splits["train"].batches(config.batch_size, shuffle=True, generator=order, longest_first=True):
        inputs = feature_inputs(batch, device)

        def run(inputs=inputs) -> dict:
            with autocast(precision, device):
                return step(model, inputs, optimizer, config)

        yield run


def seconds_per_iteration(config, splits, precision: str, iterations: int) -> float:
    """The least time of `iterations` training iterations (after one warm-up) under `precision`'s autocast: the
    trainer refuses bfloat16 where it is slow, and this measures how slow."""
    times = []
    for run in itertools.islice(training_iterations(config, splits, precision), iterations + 1):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times[1:] or times)


GEMM_OPERATORS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmm_", "aten::addbmm"}


def time_split(config, splits, iterations: int, warm_up: int = 3, top: int = 8) -> dict:
    """Iterations `warm_up` .. `warm_up + iterations` of the trainer's step, run three times from the same seed (so
    the same batches, dropout masks and two-step decisions): timed with nothing watching; under torch.profiler, for
    their matrix products' self time in situ and the other operators' self time, largest first; and under the GEMM
    recorder, for the same products replayed back to back (their floor)."""
    from torch.profiler import ProfilerActivity, profile

    def measured_runs() -> list:
        runs = list(itertools.islice(training_iterations(config, splits), warm_up + iterations))
        for run in runs[:warm_up]:
            run()
        return runs[warm_up:]

    runs = measured_runs()
    started = time.perf_counter()
    for run in runs:
        run()
    wall = time.perf_counter() - started
    runs = measured_runs()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for run in runs:
            run()
    runs = measured_runs()
    with GemmRecorder() as recorder:
        for run in runs:
            run()
    events = [event for event in profiler.key_averages() if event.self_cpu_time_total > 0]
    others = sorted(
        (event for event in events if event.key not in GEMM_OPERATORS), key=lambda e: -e.self_cpu_time_total
    )
    return {
        "iterations": iterations,
        "wall_seconds": wall,
        "profiled_seconds": sum(event.self_cpu_time_total for event in events) / 1e6,
        "gemm_in_situ_seconds": sum(event.self_cpu_time_total for event in events if event.key in GEMM_OPERATORS) / 1e6,
        "gemm_replayed_seconds": replay_seconds([call.gemm for call in recorder.calls]),
        "other_operators": [(event.key, event.self_cpu_time_total / 1e6, event.count) for event in others[:top]],
    }


def _losses(run_dir: Path) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [line["loss_step_one"] for line in lines]


def _load() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def measure_head(
    method, base, cache, splits, work: Path, bf16_samples: int, bf16_iterations: int, profile_iterations: int = 0
) -> dict:
    config = base.replace(**method.overrides)
    split = time_split(config, splits, profile_iterations) if profile_iterations else None
    iteration_seconds = {}
    if bf16_iterations:
        for precision in ("float32", "bfloat16"):
            iteration_seconds[precision] = seconds_per_iteration(config, splits, precision, bf16_iterations)
    load_before = _load()
    train(cache, config, work / f"{method.key}-timed", log=lambda _line: None, splits=splits)
    load_after = _load()
    timed = [json.loads(line) for line in (work / f"{method.key}-timed" / "log.jsonl").read_text().splitlines()]
    counted, counted_losses = count_training(cache, config, splits, work / f"{method.key}-counted")
    dev_flops = count_dev_pass(config, splits)
    gemms = counted[0]["gemms"]
    gemm_flops = sum(g.flops for g in gemms)
    fp32_throughput = gemm_flops / replay_seconds(gemms)
    bf16_throughput = 1.0 / bf16_seconds_per_flop(gemms, bf16_samples) if bf16_samples else None
    epochs = []
    for line, count in zip(timed, counted):
        floor = count["flops"] / fp32_throughput
        epochs.append(
            {
                "epoch": line["epoch"],
                "seconds": line["seconds"],
                "step_two_rate": line.get("step_two_rate", 0.0),
                "flops": count["flops"],
                "train_flops": count["flops"] - dev_flops,
                "forward_flops": count["forward_flops"],
                "backward_flops": count["backward_flops"],
                "floor_seconds": floor,
                "ratio": line["seconds"] / floor,
                "bf16_floor_seconds": count["flops"] / bf16_throughput if bf16_throughput else None,
            }
        )
    later = epochs[1:] or epochs
    best = min(later, key=lambda e: e["ratio"])
    return {
        "key": method.key,
        "label": method.label,
        "epochs": epochs,
        "dev_flops": dev_flops,
        "fp32_gflops_per_s": fp32_throughput / 1e9,
        "bf16_gflops_per_s": bf16_throughput / 1e9 if bf16_throughput else None,
        "best": best,
        "iteration_seconds": iteration_seconds,
        "time_split": split,
        "same_losses_counted_and_timed": counted_losses == [line["loss_step_one"] for line in timed],
        "load_before": load_before,
        "load_after": load_after,
    }


def print_table(name: str, rows: list[dict], threads: int) -> None:
    print(f"\n{name}, torch threads {threads}; epoch = training pass + dev pass, as the trainer logs it\n")
    print(
        "| head | epoch s (least ratio of epochs 2+) | floor s (fp32) | epoch / floor | GFLOP per epoch (train fwd+bwd "
        "+ dev) | step two rate | GEMM GFLOP/s fp32 / bf16 at its shapes | bf16 floor s | load before / after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        best = row["best"]
        bf16 = f"{row['bf16_gflops_per_s']:.1f}" if row["bf16_gflops_per_s"] else "-"
        bf16_floor = f"{best['bf16_floor_seconds']:.0f}" if best["bf16_floor_seconds"] else "-"
        print(
            f"| {row['label']} | {best['seconds']:.2f} (epoch {best['epoch']}) | {best['floor_seconds']:.2f} | "
            f"{best['ratio']:.2f} | {best['flops'] / 1e9:.0f} ({best['forward_flops'] / 1e9:.0f} fwd + "
            f"{best['backward_flops'] / 1e9:.0f} bwd; dev {row['dev_flops'] / 1e9:.1f}) | {best['step_two_rate']:.0%} | "
            f"{row['fp32_gflops_per_s']:.1f} / {bf16} | {bf16_floor} | {row['load_before']} / {row['load_after']} |"
        )
    for row in rows:
        per_epoch = ", ".join(f"{e['seconds']:.2f}/{e['floor_seconds']:.2f}" for e in row["epochs"])
        check = "" if row["same_losses_counted_and_timed"] else "  (counted run's losses differ from the timed run's!)"
        print(f"{row['key']}: seconds/floor per epoch {per_epoch}{check}")
        if row["iteration_seconds"]:
            fp32, bf16 = row["iteration_seconds"]["float32"], row["iteration_seconds"]["bfloat16"]
            print(
                f"{row['key']}: one training iteration {fp32:.3f} s float32, {bf16:.3f} s bfloat16 autocast ({bf16 / fp32:.1f}x)"
            )
        split = row["time_split"]
        if split:
            profiled, gemms = split["profiled_seconds"], split["gemm_in_situ_seconds"]
            others = ", ".join(f"{name} {seconds / profiled:.1%}" for name, seconds, _count in split["other_operators"])
            print(
                f"{row['key']}: {split['iterations']} training iterations {split['wall_seconds']:.2f} s "
                f"({split['wall_seconds'] / split['gemm_replayed_seconds']:.2f}x their matrix products replayed, "
                f"{split['gemm_replayed_seconds']:.2f} s); under the profiler, matrix products {gemms / profiled:.0%} of "
                f"the operators' time ({gemms / split['gemm_replayed_seconds']:.2f}x replayed); the largest others: {others}"
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cache", help="a cache file")
    source.add_argument("--synthetic", action="store_true", help="generate an MVSA-Single-sized cache (2048 x 7 x 7)")
    parser.add_argument("--dataset", default="mvsa-single", help="the preset to train with")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed and counted per head")
    parser.add_argument(
        "--methods", default=EPOCH_HEADS, help=f"runs/protocols/comparison.py's methods (default {EPOCH_HEADS})"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default torch's choice)")
    parser.add_argument("--bf16-samples", type=int, default=24, help="products timed for the bfloat16 estimate")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32", help="config.precision")
    parser.add_argument(
        "--bf16-iterations", type=int, default=0, help="also time this many iterations in float32 and bfloat16 autocast"
    )
    parser.add_argument(
        "--profile-iterations",
        type=int,
        default=0,
        help="also profile this many training iterations: matrix products in situ vs replayed, and the other operators",
    )
    parser.add_argument("--work", help="folder for the generated cache and the runs (default a temporary one)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    logging.getLogger("runs").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(args.work or temporary)
        work.mkdir(parents=True, exist_ok=True)
        cache = Path(args.cache) if args.cache else work / "synthetic-mvsa-single.h5"
        if args.synthetic and not cache.exists():
            write_synthetic_cache(cache, SYNTHETIC_SIZES, mean_tokens=31.0)
        preset = args.dataset if args.dataset in DATASET_PRESETS else None
        base = resolve_config(preset, epochs=args.epochs, precision=args.precision)
        splits = open_splits(cache, base)
        rows = []
        for method in select_methods(args.methods):
            started = time.perf_counter()
            rows.append(
                measure_head(
                    method,
                    base,
                    cache,
                    splits,
                    work / "runs",
                    args.bf16_samples,
                    args.bf16_iterations,
                    args.profile_iterations,
                )
            )
            print(f"{method.key}: done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        name = f"{cache.name}: {len(splits['train'])} train / {len(splits['dev'])} dev, {args.precision}"
        print_table(name, rows, torch.get_num_threads())
        if args.json:
            Path(args.json).write_text(
                json.dumps({"cache": str(cache), "threads": torch.get_num_threads(), "rows": rows}, indent=1)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
