"""Seconds per training epoch of each compared head on a real cache (this machine's CPU by default).

Every method of runs/protocols/comparison.py (SPP-SCL default and paper-faithful, CLMLF-style, MDSE-style, text-only,
image-only) trains for --epochs epochs with the dataset preset, through spp_scl.runs.train.trainer.train on splits opened
once. Epoch 1 includes warm-up (allocations, first-touch of the cached arrays), so the table shows it apart
from the mean of the later epochs. Each epoch's time includes its dev pass. The load average before and
after each run is printed, since other processes on the machine inflate wall-clock times.

    .venv/bin/python -m bench.head_speed --cache cache/files/mvsa-single__mpnet__effnet-lite2.h5 --dataset mvsa-single
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from spp_scl.heads.presets import DATASET_PRESETS, resolve_config
from spp_scl.runs.protocols.comparison import select_methods
from spp_scl.runs.train.trainer import open_splits, train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--dataset", default="mvsa-single", help="the preset to train with")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--methods", help="comma-separated subset (default all; see runs/protocols/comparison.py)")
    parser.add_argument("--threads", type=int, help="torch threads (default torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = resolve_config(args.dataset if args.dataset in DATASET_PRESETS else None, epochs=args.epochs)
    splits = open_splits(args.cache, base)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for method in select_methods(args.methods):
            config = base.replace(**method.overrides)
            load_before = os.getloadavg()[0]
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            train(args.cache, config, Path(work) / method.key, log=lambda *_: None, splits=splits)
            cpu, wall = time.process_time() - cpu_started, time.perf_counter() - wall_started
            log = [json.loads(line) for line in (Path(work) / method.key / "log.jsonl").read_text().splitlines()]
            parameters = json.loads((Path(work) / method.key / "config.json").read_text())["trainable_parameters"]
            later = [line["seconds"] for line in log[1:]]
            later_mean = sum(later) / len(later) if later else float("nan")
            rows.append(
                (
                    method.label,
                    parameters,
                    log[0]["seconds"],
                    later_mean,
                    cpu / args.epochs,
                    wall,
                    load_before,
                    os.getloadavg()[0],
                )
            )
            print(f"{method.key}: {rows[-1][2:]}", flush=True)
    print(
        f"\n{args.cache}: {len(splits['train'])} train / {len(splits['dev'])} dev records, {args.epochs} epochs, "
        f"batch {base.batch_size}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs\n"
    )
    print(
        "| method | trainable parameters | epoch 1 s | later epochs s (mean) "
        "| CPU s per epoch (whole run, process time) | load before / after |\n|---|---|---|---|---|---|"
    )
    for label, parameters, first, later, cpu, _, before, after in rows:
        print(f"| {label} | {parameters:,} | {first:.1f} | {later:.1f} | {cpu:.1f} | {before:.1f} / {after:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
