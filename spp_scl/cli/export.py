"""Finished runs as one self-contained folder with a model card, which predict and evaluate accept as is.

    spp-scl export runs/out/posts exports/posts                       # one run
    spp-scl export runs/out/s42 runs/out/s43 runs/out/s44 exports/ens  # a seed ensemble, served as one

OUT gets each run's weights, head.json, config.json, metrics, log, predictions and report, export.json (the runs
it holds) and README.md: a model card in the Hugging Face format (data, split, encoders, config, seeds, dev and
test metrics with their spread and the seed ensemble, the commands, the limits). The encoders are named, not
copied: predict loads them by hub id or local path and checks their weights' hashes. OUT must not exist or be
empty; the runs must share their cache's features.
"""

from __future__ import annotations

import argparse
import logging

HELP = "one or more finished runs as a self-contained folder with a model card (README.md)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders (several: a seed ensemble)")
    parser.add_argument("out", metavar="OUT", help="the folder to write (absent or empty)")


def run(args: argparse.Namespace) -> int:
    from spp_scl.runs.predict.export import export_runs

    out = export_runs(args.runs, args.out)
    print(f"exported {len(args.runs)} run(s) to {out}; model card: {out / 'README.md'}")
    return 0
