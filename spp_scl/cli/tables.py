"""The paper's tables 3-7, each one command, for every dataset whose cache is given.

    spp-scl tables --cache mvsa-single=cache/files/mvsa-single.h5 --tables 4,5,6,7 --seeds 5
    spp-scl tables --cache mvsa-single=... --base mvsa-single=runs/out/.../sweep/summary.json   # the sweep's best

The dataset name picks the preset. Writes --out/table<N>.md (ours beside the paper's numbers: accuracy, weighted and
macro F1 as mean +- std and 95% interval over seeds, a per-seed table, the full model's paired tests against each
row; the test split when the cache has one, else dev), --out/tables.json (the same with per-class F1), and per
dataset results.jsonl and trials/ (rerunning skips finished trials).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from spp_scl.cli.common import add_data_note, add_folds, add_group_size, add_named_caches, add_set, run_dataset_trials
from spp_scl.core.errors import InputError

HELP = "the paper's tables 3-7 (ablations), N seeds per row"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_named_caches(parser)
    parser.add_argument("--tables", default="3,4,5,6,7", help="which tables (default 3,4,5,6,7)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per row (default 5)")
    parser.add_argument("--faithful", action="store_true", help="paper-faithful fusion (cmf-batch) for every row")
    parser.add_argument(
        "--base",
        action="append",
        default=[],
        metavar="DATASET=SUMMARY.json",
        help="start every row from a sweep's best point (its summary.json)",
    )
    add_set(parser)
    parser.add_argument("--jobs", type=int, default=1, help="trials in parallel")
    add_group_size(parser)
    add_folds(parser)
    add_data_note(parser)
    parser.add_argument("--out", default="runs/out/tables")


def base_config(args: argparse.Namespace, dataset: str, sweep_summary: str | None = None):
    """The dataset's preset (when the name is one), --faithful, the sweep's best point, then --set."""
    from spp_scl.heads.presets import PRESETS, resolve_config
    from spp_scl.runs.sweep.grid import parse_settings

    base = resolve_config(dataset if dataset in PRESETS else None, faithful=args.faithful)
    if sweep_summary:
        try:
            best = json.loads(Path(sweep_summary).read_text())["best"]
            base = base.replace(**best["overrides"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"--base {sweep_summary}: not a sweep summary.json ({error})") from None
        logger.info(f"{dataset}: rows start from the sweep's best point {best['name']}")
    return base.replace(**parse_settings(args.set, base))


def run(args: argparse.Namespace) -> int:
    from spp_scl.cache.layout import read_attrs
    from spp_scl.runs.protocols.paper_tables import table_rows, write_tables
    from spp_scl.runs.sweep.grid import parse_named
    from spp_scl.runs.trials.executor import Trial

    try:
        caches, bases = parse_named(args.cache, "cache"), parse_named(args.base, "base")
        numbers = [int(n) for n in args.tables.split(",")]
        rows = table_rows(numbers)
    except ValueError as error:
        args.parser.error(str(error))
    out = Path(args.out)
    results = {}
    for dataset, cache in caches.items():
        if not Path(cache).is_file():
            logger.warning(f"skipping {dataset}: no cache at {cache}")
            continue
        try:
            base = base_config(args, dataset, bases.get(dataset))
        except ValueError as error:
            if isinstance(error, InputError):
                raise
            args.parser.error(str(error))
        cached_layers = len(read_attrs(Path(cache))["text_layers"])
        trials = [
            Trial(label, overrides, base.seed + i)
            for label, overrides, _ in rows
            if overrides.get("text_layers_last", 0) <= cached_layers
            for i in range(args.seeds)
        ]
        logger.info(
            f"{dataset}: {len(trials)} trials ({len(trials) // args.seeds} configurations x {args.seeds} seeds)"
        )
        results[dataset] = run_dataset_trials(args, cache, base, trials, out / dataset)
    out.mkdir(parents=True, exist_ok=True)
    for path in write_tables(numbers, results, args.seeds, out, args.data_note):
        if path.suffix == ".md":  # the tables; their figures are beside them
            print(path.read_text())
    logger.info(f"tables written to {out}")
    return 0
