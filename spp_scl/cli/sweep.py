"""Sweep config fields on one cache: a grid or random points, N seeds each, selection on dev.

    spp-scl sweep --cache cache/files/mvsa-single.h5 --preset mvsa-single \\
        --axis tau=0.05,0.07,0.1 --axis theta=0.5,0.667,0.8 --axis lambda=3,5,8 --seeds 1 --jobs 2
    spp-scl sweep --cache ... --preset mvsa-single --axis "betas=(0.9,0.99),(0.9,0.999)" --set epochs=50

    spp-scl sweep ... --prune --jobs 2                       # successive halving on the dev metric per epoch
    spp-scl sweep ... --storage postgresql://user:pw@host/db   # the same command on each machine: one study

Axis and --set values are typed like `spp-scl train --FIELD` (a tuple value of an axis goes in brackets).
The sweep is an Optuna study (default storage: optuna.journal in --out; --storage for PostgreSQL, MySQL,
Redis or a journal file elsewhere). Each (point, seed) is one trial, trained exactly once however many workers
share the study; a worker killed at any time (kill -9 included) loses only its unfinished trial, which the
next worker retries. Writes into --out: results.jsonl (one line per finished trial: config, seed, dev and test
metrics, epochs, time), trials/<key>/ (each trial's run folder), summary.md and summary.json (points ranked by mean
dev metric, each with accuracy, weighted and macro F1 as mean +- std and 95% interval over seeds; the best point's
paired tests against the others on dev; its test metrics the same way; pruned trials listed apart), PNG plots (ours and
Optuna's contour, importances and per-epoch curves), study.json (which study in which storage).
Watch a running sweep: optuna-dashboard OUT/optuna.journal (pip install -e .[dashboard]).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from spp_scl.cli.common import (
    add_config_source,
    add_data_note,
    add_folds,
    add_group_size,
    add_set,
    base_config,
    existing_file,
)
from spp_scl.core.errors import InputError

HELP = "sweep config fields (grid or random points, N seeds), select on dev"
MAX_CHECKED_POINTS = 20_000  # a config takes about 25 us to build: a grid this size is checked in half a second
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
    parser.add_argument(
        "--sampler",
        choices=("grid", "random", "tpe"),
        help="grid: every point (the paper's; default); random: --trials distinct grid points; tpe: --trials "
        "points chosen by Optuna's TPE from the axes' values",
    )
    parser.add_argument("--trials", type=int, metavar="N", help="points to train with --sampler random or tpe")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per point: seed, seed+1, ... (default 1)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes on this machine (one per GPU when present)"
    )
    add_group_size(parser)
    add_folds(parser)
    parser.add_argument("--out", help="sweep folder (default runs/out/<cache name>/sweep)")
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="the study's storage, shared by workers on several machines: postgresql://USER:PW@HOST:PORT/DB, "
        "mysql://USER:PW@HOST:PORT/DB, redis://HOST:PORT/0 or journal:PATH (default: optuna.journal in --out)",
    )
    parser.add_argument(
        "--study", metavar="NAME", help="study name (default: the cache's name and a digest of cache, axes, config)"
    )
    parser.add_argument(
        "--prune",
        nargs="?",
        const="successive-halving",
        default="none",
        choices=("none", "successive-halving", "hyperband"),
        help="stop trials whose dev metric per epoch falls behind (--prune alone: successive halving)",
    )
    parser.add_argument(
        "--prune-min-epochs",
        type=int,
        metavar="E",
        help="epochs before the first pruning decision (default: epochs / factor^3, at least 1)",
    )
    parser.add_argument("--prune-factor", type=int, default=3, help="keep 1 in FACTOR at each rung (default 3)")
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        metavar="SECONDS",
        help="a running trial's sign of life; after 4 missed, its trial is retried by another worker (default 30)",
    )
    add_data_note(parser)


def sweep_space(args: argparse.Namespace) -> tuple:
    """(the base config: preset or --config, --faithful, then --set; the swept values of each --axis field)."""
    from spp_scl.runs.sweep.grid import parse_settings, parse_space

    base = base_config(args)
    base = base.replace(**parse_settings(args.set, base))
    if args.folds:  # every (point, seed) once per fold; its base says so, and so does the study's name
        base = base.replace(selection="folds", folds=args.folds)
    space = parse_space(args.axis, base)
    check_points(base, space)
    return base, space


def check_points(base, space: dict) -> None:
    """Every swept value, and every point of a grid of up to MAX_CHECKED_POINTS, makes a valid config: a bad
    value (`--axis tau=-1`) is refused before anything starts, not when its trial does."""
    import itertools

    for field, values in space.items():
        for value in values:
            try:
                base.replace(**{field: value})
            except (TypeError, ValueError) as error:
                raise ValueError(f"--axis {field}: the value {value!r}: {error}") from None
    if math.prod(len(values) for values in space.values()) > MAX_CHECKED_POINTS:
        return
    for values in itertools.product(*space.values()):
        point = dict(zip(space, values))
        try:
            base.replace(**point)
        except (TypeError, ValueError) as error:
            raise ValueError(f"--axis: the point {point}: {error}") from None


def run(args: argparse.Namespace) -> int:
    from spp_scl.core.extras import require

    require("optuna")
    try:
        base, space = sweep_space(args)
        sampler = args.sampler or ("random" if args.random else "grid")
        points = args.trials or args.random
        if args.seeds < 1 or args.jobs < 1 or args.heartbeat < 1 or args.prune_factor < 2:
            raise ValueError("--seeds, --jobs and --heartbeat must be >= 1, --prune-factor >= 2")
        if sampler in ("random", "tpe") and not points:
            raise ValueError(f"--sampler {sampler} needs --trials N")
        if args.prune_min_epochs is not None and args.prune_min_epochs < 1:
            raise ValueError("--prune-min-epochs must be >= 1")
    except InputError:
        raise
    except ValueError as error:  # a bad option value: argparse's message and status
        args.parser.error(str(error))
    cache = existing_file(args.cache, "--cache")
    from spp_scl.runs.sweep.driver import run_sweep
    from spp_scl.runs.sweep.study import SweepPlan
    from spp_scl.runs.sweep.worker import Pruning
    from spp_scl.runs.sweep.worker_exits import storage_loss_as_error

    out = Path(args.out) if args.out else Path("runs/out") / cache.stem / "sweep"
    seeds = [base.seed + i for i in range(args.seeds)]
    plan = SweepPlan(cache, base, space, seeds, sampler=sampler, points=points, shuffle=args.prune != "none")
    logger.info(f"sweep: {sampler} over {plan.grid_size()} points x {args.seeds} seeds -> {out}")
    pruning = Pruning(args.prune, args.prune_min_epochs, args.prune_factor)
    with storage_loss_as_error(args.storage):  # a server lost mid-sweep: one line, status 5
        summary = run_sweep(
            plan,
            out,
            args.storage,
            args.study,
            jobs=args.jobs,
            heartbeat=args.heartbeat,
            pruning=pruning,
            group_size=args.group_size,
            data_note=args.data_note,
        )
    print((out / "summary.md").read_text())
    print("plots: " + ", ".join(str(out / name) for name in summary.get("figures", [])))
    return 0
