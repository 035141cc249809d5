"""Diagnostics and a one-page report for trained runs: `<run>/report.md` with pictures in `<run>/diagnostics/`.

    spp-scl report runs/out/my-run [more runs ...]
    spp-scl report runs/out/my-run --no-tsne --splits dev

The distances and the t-SNE come from the dev and test features of the cache each run trained on; without that
cache (a run folder moved or exported alone) the report is written from the run's own files and says what it
leaves out. With several runs, a run that fails is reported and the others still get their report; the status
is the worst one.
"""

from __future__ import annotations

import argparse
import logging
import sys

from spp_scl.core.errors import EXIT_INPUT, ToolError

HELP = "diagnostics (IID/TTD/ITD, t-SNE, curves) and a one-page report per run"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders written by `spp-scl train`")
    parser.add_argument(
        "--splits", default="dev,test", help="cache splits to diagnose (default dev,test; absent ones are left out)"
    )
    parser.add_argument("--no-tsne", dest="tsne", action="store_false", help="skip the t-SNE picture (the slow part)")
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    from spp_scl.runs.predict.run_folder import RunFolder
    from spp_scl.runs.report.diagnostics import run_diagnostics
    from spp_scl.runs.report.run_report import write_report

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    status = 0
    for run_dir in args.runs:
        try:
            cache = RunFolder(run_dir).cache
            if not cache.is_file():
                logger.warning(
                    f"{run_dir}: its cache {cache} is not here: the report leaves out the modality distances and the "
                    "pictures, which need its features"
                )
                print(f"report: {write_report(run_dir)}")
                continue
            diagnostics = run_diagnostics(
                run_dir,
                splits,
                tsne=args.tsne,
                device=args.device,
                log=lambda message, run_dir=run_dir: logger.info(f"{run_dir}: {message}"),
            )
            print(f"report: {write_report(run_dir, diagnostics)}")
        except (ToolError, ValueError, OSError, KeyError) as error:
            print(f"error: {run_dir}: {error}", file=sys.stderr)
            status = max(status, getattr(error, "exit_code", EXIT_INPUT))
    return status
