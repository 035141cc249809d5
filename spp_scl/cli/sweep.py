"""Sweep config fields on one cache: a grid or random points, N seeds each, selection on dev.

    spp-scl sweep --cache cache/files/mvsa-single.h5 --preset mvsa-single \\
        --axis tau=0.05,0.07,0.1 --axis theta=0.5,0.667,0.8 --axis lambda=3,5,8 --seeds 1 --jobs 2
    spp-scl sweep --cache ... --preset mvsa-single --axis "betas=(0.9,0.99),(0.9,0.999)" --set epochs=50

Axis and --set values are typed like `spp-scl train --FIELD` (a tuple value of an axis goes in brackets).
Writes into --out: results.jsonl (one line per finished trial: config, seed, dev and test metrics, epochs,
time; rerunning skips what is there), trials/<key>/ (each trial's run folder), summary.md and summary.json
(best point by mean dev metric; its test metrics as mean +- std over seeds), and PNG plots.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from spp_scl.cli.common import add_config_source, add_set, base_config, existing_file
from spp_scl.errors import InputError

HELP = "sweep config fields (grid or random points, N seeds), select on dev"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", required=True, help="a cache file written by `spp-scl extract`")
    add_config_source(parser)
    parser.add_argument(
        "--axis",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="a swept config field and its values (tau and lambda are accepted as names)",
    )
    add_set(parser)
    parser.add_argument("--random", type=int, metavar="N", help="N random points of the grid instead of all of it")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per point: seed, seed+1, ... (default 1)")
    parser.add_argument("--jobs", type=int, default=1, help="trials in parallel (processes; one per GPU when present)")
    parser.add_argument("--out", help="sweep folder (default runs/out/<cache name>/sweep)")


def sweep_space(args: argparse.Namespace) -> tuple:
    """(the base config: preset or --config, --faithful, then --set; the swept values of each --axis field)."""
    from runs.sweeper import parse_settings, parse_space

    base = base_config(args)
    base = base.replace(**parse_settings(args.set, base))
    return base, parse_space(args.axis, base)


def run(args: argparse.Namespace) -> int:
    from runs.sweeper import expand, summarise, write_summary

    try:
        base, space = sweep_space(args)
        if args.seeds < 1 or args.jobs < 1:
            raise ValueError("--seeds and --jobs must be >= 1")
    except InputError:
        raise
    except ValueError as error:  # a bad option value: argparse's message and status
        args.parser.error(str(error))
    cache = existing_file(args.cache, "--cache")
    from runs.sweep_plots import plot_sweep
    from runs.trials import run_trials

    out = Path(args.out) if args.out else Path("runs/out") / cache.stem / "sweep"
    trials = expand(space, [base.seed + i for i in range(args.seeds)], args.random)
    logger.info(f"sweep: {len(trials)} trials ({len(trials) // args.seeds} points x {args.seeds} seeds) -> {out}")
    rows = run_trials(cache, base, trials, out / "results.jsonl", out / "trials", jobs=args.jobs)
    summary = summarise(rows, base.selection_metric)
    write_summary(summary, out)
    plots = plot_sweep(rows, base.selection_metric, out)
    print((out / "summary.md").read_text())
    print("plots: " + ", ".join(str(p) for p in plots))
    return 0
