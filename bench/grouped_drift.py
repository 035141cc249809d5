"""How far a trial trained in a group drifts from the same trial trained alone, against how far training alone
drifts when only the thread count changes.

Float reassociation is the only difference in both comparisons: the grouped trainer's batched kernels round
differently from the modules' (runs/train/grouped_trainer.py), and so does a matrix product split over another number
of threads. On real data both can flip a two-step decision that sits within rounding of its threshold, after
which a trial follows another trajectory. This measures the two drifts side by side, per trial and epoch, so that
the grouped trainer's tolerance is stated against one users already live with (docs/training.md: "same seed, same cache, same
machine: the same metrics to the last digit").

Three trainings of the same trials (the dataset preset, --lr, --ha-gate, seeds --seeds; every run --epochs
epochs, no early stopping), each in its own process:
- alone-1: spp_scl.runs.train.trainer.train, one trial after the other, 1 thread (the reference);
- alone-2: the same with 2 threads;
- group-1: spp_scl.runs.train.grouped_trainer.train_group, all trials as one group, 1 thread.
Per mode against the reference: the first epoch at which any figure of a trial's log (losses, rule diagnostics,
dev metrics; all but the wall time) differs, the first at which its step-two rate or dev accuracy differs, the
largest |difference| of dev accuracy over the epochs, and the selected epoch and its dev accuracy / weighted F1.

    python -m bench.grouped_drift --cache cache/files/mvsa-single.h5 --epochs 10 --seeds 42,43,44,45
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = {"alone-1": 1, "alone-2": 2, "group-1": 1}


def configs(args) -> list:
    from spp_scl.heads.config import resolve_config

    return [
        resolve_config(
            args.dataset, lr=args.lr, ha_gate=args.ha_gate, epochs=args.epochs, patience=None, seed=int(seed)
        )
        for seed in args.seeds.split(",")
    ]


def train_mode(mode: str, cache: Path, work: Path, args) -> None:
    """One mode's trainings, in this process."""
    import torch

    from spp_scl.runs.train.grouped_trainer import train_group
    from spp_scl.runs.train.trainer import open_splits, train

    torch.set_num_threads(MODES[mode])
    trials = configs(args)
    splits = open_splits(cache, trials[0])
    run_dirs = [work / mode / f"seed{config.seed}" for config in trials]
    if mode.startswith("group"):
        train_group(cache, trials, run_dirs, splits=splits, log=lambda *_: None)
    else:
        for config, run_dir in zip(trials, run_dirs):
            train(cache, config, run_dir, splits=splits, log=lambda *_: None)


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def compare(reference: list[dict], other: list[dict]) -> dict:
    """Where `other`'s per-epoch log leaves `reference`'s, and by how much."""

    def first(*keys: str):  # the first epoch whose lines differ in one of `keys` (none: any figure but the time)
        keys = keys or tuple(reference[0].keys() - {"seconds"})
        return next((a["epoch"] for a, b in zip(reference, other) if any(a.get(k) != b.get(k) for k in keys)), None)

    def selected(log):
        line = [line for line in log if line["selected"]][-1]
        return line["epoch"], line["dev_accuracy"], line["dev_f1_weighted"]

    return {
        "first_epoch_log_differs": first(),
        "first_epoch_step_two_rate_differs": first("step_two_rate"),
        "first_epoch_dev_accuracy_differs": first("dev_accuracy"),
        "max_abs_dev_accuracy_difference": max(
            abs(a["dev_accuracy"] - b["dev_accuracy"]) for a, b in zip(reference, other)
        ),
        "selected": selected(other),
        "reference_selected": selected(reference),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True, help="a cache file")
    parser.add_argument("--dataset", default="mvsa-single", help="the preset to train with")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ha-gate", default="projection", choices=["mean", "projection"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="42,43,44,45")
    parser.add_argument("--work", help="folder for the run folders (default a temporary one)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # a mode's own process
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="grouped-drift-"))
    if args.one:
        train_mode(args.one, Path(args.cache), work, args)
        return 0
    for mode in MODES:
        if not (work / mode).exists():
            command = [sys.executable, "-m", "bench.grouped_drift", "--one", mode, "--work", str(work)]
            command += ["--cache", args.cache, "--dataset", args.dataset, "--lr", str(args.lr)]
            command += ["--ha-gate", args.ha_gate, "--epochs", str(args.epochs), "--seeds", args.seeds]
            subprocess.run(command, check=True)
    rows = []
    for seed in args.seeds.split(","):
        reference = read_log(work / "alone-1" / f"seed{seed}")
        for mode in ("alone-2", "group-1"):
            rows.append({"seed": int(seed), "mode": mode, **compare(reference, read_log(work / mode / f"seed{seed}"))})
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{args.epochs} epochs, lr {args.lr}, HA gate {args.ha_gate}; against alone with 1 thread (run folders {work})"
    )
    print(
        "| seed | mode | first epoch any logged figure differs | first epoch step two differs | "
        "first epoch dev acc differs | max abs dev acc diff | selected (epoch, acc, F1) | alone-1 selected |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        sel, ref = row["selected"], row["reference_selected"]
        print(
            f"| {row['seed']} | {row['mode']} | {row['first_epoch_log_differs']} | {row['first_epoch_step_two_rate_differs']} | "
            f"{row['first_epoch_dev_accuracy_differs']} | {row['max_abs_dev_accuracy_difference']:.4f} | "
            f"{sel[0]}, {sel[1]:.4f}, {sel[2]:.4f} | {ref[0]}, {ref[1]:.4f}, {ref[2]:.4f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
