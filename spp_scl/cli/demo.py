"""The built-in demo: a generated image-text set and tiny random encoders, then the whole protocol on it
(extraction, a 2 x 2 x 2 tau / theta / lambda sweep, the paper's tables 3-7, the comparison), in minutes on a CPU.

    spp-scl demo                      # into ./demo (what `bash run_all.sh` runs when no data is configured)
    spp-scl demo --dir /tmp/demo --sizes 48,24,24 --epochs 2 --seeds 1

A third of the generated labels show only in the text (a sentiment word), a third only in the image (a colour),
a third only in both together (a cue word and a cue shape whose combination decides). It is a demo of the
wiring, not a measurement, and every table and summary it writes says "DEMO: generated data, not MVSA" in its
title and JSON. Rerunning skips every finished step. Each stage's output goes to DIR/<stage>.log.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from spp_scl.core.errors import ToolError

HELP = "the whole protocol on a generated set with tiny encoders (minutes on a CPU)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="demo", help="where the demo's data, cache and outputs go (default demo)")
    parser.add_argument("--sizes", default="600,150,150", help="generated train,dev,test posts (default 600,150,150)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per trial (default 8)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per table row and compared method (default 2)")
    parser.add_argument("--jobs", type=int, default=2, help="trials at a time (default 2)")


def _stage(name: str, argv: list[str], log_file: Path | None = None) -> None:
    """Run one verb in this process; with `log_file`, its results and messages go there instead of the terminal."""
    from spp_scl.cli import PACKAGES, build_parser, run_verb

    print(f"== {name}", flush=True)
    args = build_parser().parse_args(argv)
    with contextlib.ExitStack() as stack:
        if log_file is not None:
            handle = stack.enter_context(log_file.open("w"))
            stack.enter_context(contextlib.redirect_stdout(handle))
            file_handler = logging.StreamHandler(handle)
            for package in PACKAGES:
                logging.getLogger(package).addHandler(file_handler)
                stack.callback(logging.getLogger(package).removeHandler, file_handler)
        status = run_verb(args)
    if status != 0:
        raise ToolError(f"demo stage '{name}' failed with status {status}" + (f"; see {log_file}" if log_file else ""))


def best_point_lines(summary_md: str) -> str:
    """The sweep summary's paragraph on the best point: its name and its dev and test figures."""
    lines = summary_md.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Best point by dev")), len(lines))
    end = next((i for i in range(start + 2, len(lines)) if not lines[i].startswith("- ")), len(lines))
    return "\n".join(lines[start:end]).rstrip()


def run(args: argparse.Namespace) -> int:
    from spp_scl.core.extras import require

    for module in ("transformers", "optuna"):  # the demo extracts, then sweeps
        require(module)
    from spp_scl.extract.demo import DEMO_STAMP, prepare_demo

    try:
        sizes = dict(zip(("train", "dev", "test"), (int(n) for n in args.sizes.split(",")), strict=True))
    except ValueError:
        args.parser.error(f"--sizes {args.sizes!r}: write three numbers train,dev,test")
    folder = Path(args.dir)
    print(f"== DEMO (no data configured; see docs/real-data.md): generated posts and tiny encoders in {folder}/")
    prepare_demo(folder, sizes, log=logger.info)
    cache = folder / "cache" / "demo.h5"
    _stage(
        "extract the demo's features",
        [
            "extract",
            "--data",
            str(folder / "data"),
            "--dataset",
            "mvsa-single",
            "--text-encoder",
            str(folder / "text-encoder"),
            "--image-encoder",
            str(folder / "image-encoder"),
            "--out",
            str(cache),
        ],
    )
    # The demo's features are tiny and its training set small: a larger learning rate, few epochs (the preset's
    # StepLR, every 10 epochs, never fires). Two trials at a time, one core each.
    settings = [
        "--set",
        f"epochs={args.epochs}",
        "--set",
        "lr=0.005",
        "--set",
        "batch_size=32",
        "--jobs",
        str(args.jobs),
        "--data-note",  # every table and summary says it in its title and JSON
        DEMO_STAMP,
    ]
    _stage(
        "sweep tau x theta x lambda (2 x 2 x 2, 1 seed) on dev",
        [
            "sweep",
            "--cache",
            str(cache),
            "--preset",
            "mvsa-single",
            "--axis",
            "tau=0.05,0.1",
            "--axis",
            "theta=0.5,0.8",
            "--axis",
            "lambda=3,5",
            *settings,
            "--out",
            str(folder / "sweep"),
        ],
        folder / "sweep.log",
    )
    print(best_point_lines((folder / "sweep" / "summary.md").read_text()))
    _stage(
        f"the paper's tables 3-7 from the sweep's best point ({args.seeds} seeds)",
        [
            "tables",
            "--cache",
            f"mvsa-single={cache}",
            "--base",
            f"mvsa-single={folder / 'sweep' / 'summary.json'}",
            "--seeds",
            str(args.seeds),
            *settings,
            "--out",
            str(folder / "tables"),
        ],
        folder / "tables.log",
    )
    _stage(
        f"SPP-SCL beside CLMLF-style, MDSE-style, text-only and image-only heads ({args.seeds} seeds)",
        [
            "compare",
            "--cache",
            f"mvsa-single={cache}",
            "--seeds",
            str(args.seeds),
            *settings,
            "--out",
            str(folder / "compare"),
        ],
        folder / "compare.log",
    )
    print((folder / "compare" / "comparison.md").read_text())
    print(
        f"DEMO done (generated data, not a measurement). Tables: {folder}/tables/table{{3,4,5,6,7}}.md; sweep summary "
        f"and plots: {folder}/sweep/; comparison: {folder}/compare/comparison.md. For real data see docs/real-data.md."
    )
    return 0
