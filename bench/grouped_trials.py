"""Trial-epochs per hour: trials trained interleaved in groups (runs/train/interleaved_trials.py) against trained
alone, and the peak memory of a 27-trial group.

Each measurement runs in its own process (so its peak RSS is its own), on one cache, with the dataset preset and
a tau / theta / lambda grid (tau 0.05, 0.07, 0.1; theta 0.5, 0.667, 0.8; lambda 3, 5, 8), one seed:
- alone:          --alone-trials trials of the grid, one after the other, with spp_scl.runs.train.trainer.train (by
                  default as many as the largest of group4 / group8 asked for, so that alone and that group train
                  the same trials: tau and theta set how often step two runs, so different trials cost different
                  time; the table's "x alone" is given only for a group of as many trials);
- group4, group8: the grid's first 4 or 8 points interleaved (each batch read once, every trial's step on it);
- group27:        the whole grid interleaved.
Trial-epochs per hour = trials x epochs / seconds of training x 3600 (opening the cache is not counted; every
epoch's dev pass is). With --jobs J, J processes run each measurement side by side (as `sweep --jobs J` runs its
workers), job j on the grid's points from 8 j on (wrapping), and the rate is all jobs' trial-epochs over the
slowest job's seconds. Peak RSS is the process's maximum resident set (cache in memory included, when it is held
there: --in-memory).

    python -m bench.grouped_trials --synthetic --threads 2 --epochs 3                   # MVSA-Single-sized
    python -m bench.grouped_trials --cache cache/files/mvsa-single.h5 --threads 1 --epochs 6 --kinds alone,group4
    OMP_NUM_THREADS=1 python -m bench.grouped_trials --cache C.h5 --threads 1 --jobs 2 --kinds alone,group4,group8
    python -m bench.grouped_trials --synthetic --hfm --kinds group27 --epochs 1 --in-memory no   # HFM-sized RSS
    python -m bench.grouped_trials --synthetic --sizes 96,32 --map-shape 64,3,3 --epochs 1 --alone-trials 1  # smoke

The synthetic caches are written once into --work (MVSA-Single: 3,611 train / 450 dev; HFM: 19,816 / 2,410 /
2,409 = 24,635 records; maps --map-shape, default the real MVSA-Single cache's 1280 x 7 x 7, tokens of 4 x 768,
31 on average).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = ("alone", "group4", "group8", "group27")
GROUP_SIZES = {"group4": 4, "group8": 8}
MVSA_SINGLE_SIZES = {"train": 3611, "dev": 450}
HFM_SIZES = {"train": 19816, "dev": 2410, "test": 2409}
GRID = list(itertools.product((0.05, 0.07, 0.1), (0.5, 0.667, 0.8), (3.0, 5.0, 8.0)))  # tau, theta, lambda


def grid_configs(kind: str, dataset: str, epochs: int, alone_trials: int, job: int = 0) -> list:
    from spp_scl.heads.presets import resolve_config

    base = resolve_config(dataset, epochs=epochs)
    grid = GRID[8 * job % len(GRID) :] + GRID[: 8 * job % len(GRID)]  # job j starts at point 8 j
    count = GROUP_SIZES.get(kind) or (alone_trials if kind == "alone" else len(GRID))
    points = grid[:count]
    return [base.replace(temperature=tau, theta=theta, ce_weight=lam, seed=1) for tau, theta, lam in points]


def measure(kind: str, cache: Path, args) -> dict:
    """One measurement, in this process."""
    import torch

    from spp_scl.runs.train.interleaved_trials import train_interleaved
    from spp_scl.runs.train.trainer import open_splits, train

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = grid_configs(kind, args.dataset, args.epochs, args.alone_trials, args.job)
    in_memory = {"auto": None, "yes": True, "no": False, "shared": None}[args.in_memory]
    opened = time.perf_counter()
    splits = open_splits(cache, configs[0], in_memory, shared=args.shared_folder)
    opened = time.perf_counter() - opened
    work = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=args.work))
    started = time.perf_counter()
    if kind == "alone":
        for index, config in enumerate(configs):
            train(cache, config, work / str(index), splits=splits, log=lambda *_: None)
    else:
        run_dirs = [work / str(i) for i in range(len(configs))]
        train_interleaved(cache, configs, run_dirs, splits=splits, log=lambda *_: None)
    seconds = time.perf_counter() - started
    trial_epochs = len(configs) * args.epochs
    return {
        "kind": kind,
        "trials": len(configs),
        "epochs": args.epochs,
        "seconds": round(seconds, 2),
        "trial_epochs_per_hour": round(trial_epochs / seconds * 3600, 1),
        "seconds_opening_cache": round(opened, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3),
        "pss_gb_at_end": proportional_set_size_gb(),
        "threads": torch.get_num_threads(),
        "split_in_memory": splits["train"].in_memory,
        "split_shared": splits["train"].shared,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cache", help="a cache file")
    source.add_argument("--synthetic", action="store_true", help="a generated cache (MVSA-Single-sized, or --hfm)")
    parser.add_argument("--hfm", action="store_true", help="with --synthetic: HFM-sized (24,635 records)")
    parser.add_argument("--sizes", help="with --synthetic: train,dev records instead (a smoke run)")
    parser.add_argument("--map-shape", default="1280,7,7", help="with --synthetic: C,h,w of the image maps")
    parser.add_argument("--dataset", default="mvsa-single", help="the preset to train with")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"which measurements (default {','.join(KINDS)})")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    parser.add_argument(
        "--alone-trials",
        type=int,
        help="trials trained alone for the baseline rate (default: as many as the largest of group4 / group8 asked "
        "for, the same trials; else 2)",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default torch's choice)")
    parser.add_argument(
        "--in-memory",
        choices=["auto", "yes", "no", "shared"],
        default="auto",
        help="hold the splits in memory (shared: the jobs map one copy of train and dev, cache/shared_split.py)",
    )
    parser.add_argument("--work", help="folder for the generated cache and the runs (default a temporary one)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--jobs", type=int, default=1, help="processes running each measurement side by side")
    parser.add_argument("--job", type=int, default=0, help=argparse.SUPPRESS)  # a side-by-side process's index
    parser.add_argument("--one", choices=KINDS, help=argparse.SUPPRESS)  # a measurement's own process
    parser.add_argument("--cache-file", help=argparse.SUPPRESS)
    parser.add_argument("--shared-folder", help=argparse.SUPPRESS)  # the shared copy a measurement's jobs map
    args = parser.parse_args(argv)
    if args.alone_trials is None:
        args.alone_trials = max([GROUP_SIZES.get(kind, 0) for kind in args.kinds.split(",")] + [2])
    if args.alone_trials < 1 or args.epochs < 1 or args.jobs < 1:
        parser.error("--alone-trials, --epochs and --jobs must be at least 1")
    args.work = args.work or tempfile.mkdtemp(prefix="grouped-trials-")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(measure(args.one, Path(args.cache_file), args)))
        return 0

    cache = Path(args.cache) if args.cache else _synthetic_cache(args)
    from spp_scl.runs.trials.split_storage import shared_splits

    # --in-memory shared: the copy is written once before the jobs start and removed after, as a run does it.
    with shared_splits(cache, args.in_memory, args.work) as shared:
        rows = measure_kinds(args, cache, shared)
    alone_row = next((row for row in rows if row["kind"] == "alone"), None)

    print(f"\ncache {cache}, {args.epochs} epoch(s) per trial")
    print(f"{'kind':<16}{'trials':>7}{'seconds':>10}{'trial-epochs/h':>16}{'x alone':>9}{'peak RSS GB':>13}")
    for row in rows:
        # A ratio only against the same trials: tau and theta set how often step two runs, so other trials cost
        # other time.
        same_trials = alone_row is not None and alone_row["trials"] == row["trials"]
        ratio = f"{row['trial_epochs_per_hour'] / alone_row['trial_epochs_per_hour']:.2f}" if same_trials else "-"
        print(
            f"{row['kind']:<16}{row['trials']:>7}{row['seconds']:>10.1f}{row['trial_epochs_per_hour']:>16.1f}"
            f"{ratio:>9}{row['peak_rss_gb']:>13.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"cache": str(cache), "rows": rows}, indent=1))
    return 0


def measure_kinds(args, cache: Path, shared: Path | None) -> list[dict]:
    """Each kind's measurement, in its own processes (`args.jobs` side by side); `shared`: the splits' shared copy."""
    rows = []
    for kind in args.kinds.split(","):
        command = [sys.executable, "-m", "bench.grouped_trials", "--one", kind, "--cache-file", str(cache)]
        command += ["--synthetic", "--dataset", args.dataset, "--epochs", str(args.epochs), "--work", args.work]
        command += ["--alone-trials", str(args.alone_trials), "--in-memory", args.in_memory]
        command += ["--threads", str(args.threads)] if args.threads else []
        command += ["--shared-folder", str(shared)] if shared else []
        rows.append(run_jobs(command, args.jobs))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def proportional_set_size_gb() -> float | None:
    """This process's proportional set size now (pages shared with other processes counted in part: a mapped
    split shared by J jobs counts 1 / J in each), from /proc/self/smaps_rollup; None where there is none."""
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return round(int(line.split()[1]) / 1024**2, 3)
    except OSError:
        pass
    return None


def run_jobs(command: list[str], jobs: int) -> dict:
    """One measurement in `jobs` processes side by side; their figures combined (one job: its own row)."""
    processes = [
        subprocess.Popen([*command, "--job", str(job)], stdout=subprocess.PIPE, text=True) for job in range(jobs)
    ]
    outputs = [process.communicate()[0] for process in processes]
    if any(process.returncode for process in processes):
        raise SystemExit(f"a measurement failed: {' '.join(command)}")
    parts = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    if jobs == 1:
        return parts[0]
    seconds = max(part["seconds"] for part in parts)
    trial_epochs = sum(part["trials"] * part["epochs"] for part in parts)
    return {
        **parts[0],
        "jobs": jobs,
        "trials": sum(part["trials"] for part in parts),
        "seconds": seconds,
        "trial_epochs_per_hour": round(trial_epochs / seconds * 3600, 1),
        "peak_rss_gb": max(part["peak_rss_gb"] for part in parts),
        "pss_gb_at_end": [part["pss_gb_at_end"] for part in parts],
        "per_job_seconds": [part["seconds"] for part in parts],
    }


def _synthetic_cache(args) -> Path:
    from spp_scl.cache.synthetic import write_synthetic_cache

    if args.sizes:
        train, dev = (int(n) for n in args.sizes.split(","))
        sizes, name = {"train": train, "dev": dev}, f"synthetic-{train}-{dev}"
    else:
        sizes, name = (HFM_SIZES, "synthetic-hfm") if args.hfm else (MVSA_SINGLE_SIZES, "synthetic-mvsa-single")
    map_shape = tuple(int(n) for n in args.map_shape.split(","))
    path = Path(args.work) / f"{name}-{'x'.join(map(str, map_shape))}.h5"
    if not path.exists():
        write_synthetic_cache(path, sizes, map_shape=map_shape, mean_tokens=31.0)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
