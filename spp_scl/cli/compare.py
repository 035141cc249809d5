"""SPP-SCL (default and paper-faithful fusion), CLMLF-style, MDSE-style, text-only and image-only heads on
every dataset whose cache is given: N seeds each, dev-selected, one Markdown table beside the papers' numbers
(accuracy, weighted and macro F1 as mean +- std and 95% interval; SPP-SCL's paired tests against each method).

    spp-scl compare --cache mvsa-single=cache/files/mvsa-single.h5 --cache hfm=cache/files/hfm.h5
    spp-scl compare --cache mvsa-single=... --seeds 2 --set epochs=20 --methods spp-scl,clmlf,mdse
    spp-scl compare --cache mvsa-single=... --folds 5 --seeds 3 --variant "weight averaging:weight_average=0.99"

The dataset name picks the preset (mvsa-single, mvsa-multiple, hfm: optimiser, schedule, batch, selection
metric; CLMLF's depths). Writes --out/comparison.md and comparison.json, and per dataset results.jsonl and
trials/ (one run folder per trial); rerunning skips finished trials. Reports the test split when the cache
has one, else dev. Exit status 3 when no cache was found.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from spp_scl.cli.common import add_data_note, add_folds, add_group_size, add_named_caches, add_set, run_dataset_trials
from spp_scl.core.errors import InputError

HELP = "SPP-SCL beside the compared heads and each modality alone, N seeds each"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_named_caches(parser)
    parser.add_argument("--seeds", type=int, default=5, help="seeds per method: seed, seed+1, ... (default 5)")
    parser.add_argument(
        "--methods",
        help="comma-separated subset of: spp-scl, spp-scl-faithful, clmlf, mdse, text-only, image-only (default all)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:FIELD=VALUE,...",
        help="an SPP-SCL row with settings of its own on top of --set (repeatable), tested against the SPP-SCL row "
        "like every method, e.g. 'paper gate:ha_gate=mean' or 'bs32:batch_size=32,lr=5e-4'",
    )
    add_set(parser)
    parser.add_argument("--jobs", type=int, default=1, help="trials in parallel (timings are per job when > 1)")
    add_group_size(parser)
    add_folds(parser)
    parser.add_argument(
        "--protocols",
        default="dev",
        metavar="dev,authors",
        help="selection protocols side by side: dev (the default: the best dev epoch) and authors (the authors' "
        "code: a checkpoint every 5 epochs, the best on test; optimistic, its rows say so)",
    )
    add_data_note(parser)
    parser.add_argument("--out", default="runs/out/compare")


def base_configs(args: argparse.Namespace, caches: dict[str, str]) -> dict:
    """Per dataset: its preset (when the name is one), then --set."""
    from spp_scl.heads.presets import DATASET_PRESETS, resolve_config
    from spp_scl.runs.sweep.grid import parse_settings

    bases = {dataset: resolve_config(dataset if dataset in DATASET_PRESETS else None) for dataset in caches}
    return {dataset: base.replace(**parse_settings(args.set, base)) for dataset, base in bases.items()}


def parse_variants(specs: list[str], base) -> dict[str, dict]:
    """['wa:weight_average=0.99,lr=1e-3', ...] -> {'wa': {'weight_average': 0.99, 'lr': 0.001}}, typed like --set;
    a comma only separates settings where a FIELD= follows it (betas=0.9,0.99 stays one value)."""
    import re

    from spp_scl.runs.sweep.grid import parse_settings

    variants = {}
    for spec in specs:
        name, _, settings = spec.partition(":")
        name = name.strip()
        if not name or not settings.strip():
            raise ValueError(f"--variant {spec!r}: expected NAME:FIELD=VALUE[,FIELD=VALUE...]")
        if name in variants:
            raise ValueError(f"--variant {spec!r}: the name {name!r} is given twice")
        parts = [part.strip() for part in re.split(r",(?=\s*[A-Za-z_][\w-]*\s*=)", settings)]
        try:
            variants[name] = parse_settings(parts, base)
        except ValueError as error:
            raise ValueError(f"--variant {name!r}: {str(error).removeprefix('--set ')}") from None
    return variants


def with_variants(methods: list, variants: list) -> list:
    """The variants right after the SPP-SCL row they are tested against (at the end when it is not compared)."""
    keys = [method.key for method in methods]
    at = keys.index("spp-scl") + 1 if "spp-scl" in keys else len(methods)
    return methods[:at] + variants + methods[at:]


def run(args: argparse.Namespace) -> int:
    from spp_scl.runs.protocols.comparison import (
        comparison_trials,
        methods_for,
        render_comparison,
        select_methods,
        summarise_dataset,
        variant_methods,
        views_note,
        with_protocols,
    )
    from spp_scl.runs.protocols.figures import bar_figure
    from spp_scl.runs.sweep.grid import parse_named
    from spp_scl.runs.trials.statistics import stamped

    try:
        caches = parse_named(args.cache, "cache")
        methods = select_methods(args.methods)
        bases = base_configs(args, caches)
        variants = parse_variants(args.variant, next(iter(bases.values()))) if bases else {}
        methods = with_variants(methods, variant_methods(variants))
        with_protocols(methods, args.protocols)  # an unknown protocol is an option error before anything trains
        if args.folds and "authors" in args.protocols:
            raise ValueError("--protocols authors picks checkpoints on the test split, which --folds never opens")
        if args.seeds < 1:
            raise ValueError("--seeds must be >= 1")
    except InputError:
        raise
    except ValueError as error:  # a bad option value: argparse's message and status
        args.parser.error(str(error))
    import torch

    out = Path(args.out)
    summaries, notes = [], []
    for dataset, cache in caches.items():
        if not Path(cache).is_file():
            logger.warning(f"skipping {dataset}: no cache at {cache}")
            continue
        base = bases[dataset]
        trained = with_protocols(methods_for(methods, base), args.protocols)  # names say DBCL, views, protocol
        trials = comparison_trials(trained, base, args.seeds)
        folds = f" x {args.folds} folds" if args.folds else ""
        logger.info(
            f"{dataset}: {len(trials) * (args.folds or 1)} trials ({len(trained)} rows x {args.seeds} seeds{folds})"
        )
        rows = run_dataset_trials(args, cache, base, trials, out / dataset)
        summaries.append(summarise_dataset(dataset, trained, rows))
        notes.append(f"{dataset}: {base.epochs} epochs, batch {base.batch_size}, lr {base.lr:g}, {views_note(base)}")
    if not summaries:
        raise InputError("no cache found at any --cache path: nothing to compare")
    threads = "per job" if args.jobs > 1 else f"{torch.get_num_threads()} torch thread(s)"
    note = "; ".join(notes) + f"; {args.jobs} trial(s) at a time, {threads}."
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(render_comparison(summaries, note, args.data_note))
    record = {"data_note": args.data_note, "protocol": note, "datasets": summaries}
    (out / "comparison.json").write_text(json.dumps(record, indent=1))
    for summary in summaries:  # the table as a figure: bars, every seed (and fold), 95% intervals
        compared = {"split": summary["split"], "rows": {method["label"]: method for method in summary["methods"]}}
        title = stamped(f"{summary['dataset']}: SPP-SCL and the compared heads", args.data_note)
        bar_figure(compared, title, out / f"comparison-{summary['dataset']}.png")
    print((out / "comparison.md").read_text())
    logger.info(f"written to {out / 'comparison.md'}")
    return 0
