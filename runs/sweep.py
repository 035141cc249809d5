"""Sweep config fields on one cache: a grid or random points, N seeds each, selection on dev.

    python runs/sweep.py --cache cache/files/mvsa-single.h5 --preset mvsa-single \
        --axis tau=0.05,0.07,0.1 --axis theta=0.5,0.667,0.8 --axis lambda=3,5,8 --seeds 1 --jobs 2

Writes into --out: results.jsonl (one line per finished trial: config, seed, dev and test metrics, epochs,
time; rerunning skips what is there), trials/<key>/ (each trial's run folder), summary.md and summary.json
(best point by mean dev metric; its test metrics as mean +- std over seeds), and PNG plots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

from heads.config import PRESETS, resolve_config  # noqa: E402
from runs.sweeper import expand, parse_settings, parse_space, summarise, write_summary  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS))
    parser.add_argument("--faithful", action="store_true", help="paper-faithful fusion (cmf-batch) as the base")
    parser.add_argument(
        "--axis",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="a swept config field and its values (tau and lambda are accepted as names)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=V",
        help="a fixed config value for every trial (e.g. epochs=50)",
    )
    parser.add_argument("--random", type=int, metavar="N", help="N random points of the grid instead of all of it")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per point: seed, seed+1, ... (default 1)")
    parser.add_argument("--jobs", type=int, default=1, help="trials in parallel (processes; one per GPU when present)")
    parser.add_argument("--out", help="sweep folder (default runs/out/<cache name>/sweep)")
    args = parser.parse_args(argv)
    if not Path(args.cache).is_file():
        parser.error(f"--cache {args.cache}: no such file")
    try:
        base = resolve_config(args.preset, faithful=args.faithful)
        base = base.replace(**parse_settings(args.set, base))
        space = parse_space(args.axis, base)
    except ValueError as error:
        parser.error(str(error))
    from runs.sweep_plots import plot_sweep
    from runs.trials import run_trials

    out = Path(args.out) if args.out else Path("runs/out") / Path(args.cache).stem / "sweep"
    trials = expand(space, [base.seed + i for i in range(args.seeds)], args.random)
    print(f"sweep: {len(trials)} trials ({len(trials) // args.seeds} points x {args.seeds} seeds) -> {out}")
    rows = run_trials(args.cache, base, trials, out / "results.jsonl", out / "trials", jobs=args.jobs)
    summary = summarise(rows, base.selection_metric)
    write_summary(summary, out)
    plots = plot_sweep(rows, base.selection_metric, out)
    print((out / "summary.md").read_text())
    print("plots: " + ", ".join(str(p) for p in plots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
