"""Train a head from a feature cache, select on dev, evaluate on test, write a run folder.

    spp-scl train --cache cache/files/mvsa-single.h5 --preset mvsa-single
    spp-scl train --cache ... --preset mvsa-single --faithful          # the paper's batch-attention CMF
    spp-scl train --cache ... --preset hfm --theta 0.5 --ce-weight 10 --two-step false --epochs 50
    spp-scl train --cache ... --config runs/out/x/mvsa-single-cmf-bank-seed42 --seed 43   # rerun a run, new seed

Every field of spp_scl.heads.config.SPPSCLConfig is an option (tau is --temperature, lambda is --ce-weight); the
values are: the field's default, then the preset's (or the --config run's), then --faithful, then the options
given. Training runs in one process on one device (the GPU when there is one): `accelerate launch` with
several processes is refused; a sweep runs trials side by side instead. A run folder holds config.json,
log.jsonl (per epoch; the record), model.safetensors + head.json, metrics.json, predictions.csv, and with
--report-to the trackers' files in trackers/; metrics.json is written last, and a folder without it is refused by
predict and report. One training per --out at a time (a second is refused, status 4), and an --out that holds a
finished run is refused (4) unless --force replaces it. Ctrl-C or SIGTERM stops between two steps and keeps the
state of the last finished epoch in <out>/resume/: the same command resumes from there to the run an uninterrupted
training writes (status 130; the message says when a rerun restarts instead).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spp_scl.cli.common import add_config_source, base_config, existing_file, parse_trackers
from spp_scl.core.errors import EXIT_INTERRUPTED, InputError, Refused
from spp_scl.core.options import add_dataclass_options, dataclass_values
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.runs.train.finished_run import METRICS_FILE

HELP = "train a head from a cache, select on dev, write a run folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", required=True, help="a cache file written by `spp-scl extract`")
    add_config_source(parser)
    parser.add_argument("--out", help="run folder (default runs/out/<cache name>/<preset>-<fusion or head>-seed<seed>)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="train into an --out that holds a finished run (its metrics.json), replacing that run; without it, "
        "refused (an unfinished run's folder needs no --force: the same command resumes or restarts it)",
    )
    # Deprecated (0.11): config.precision (--precision float32|bfloat16|float16) is the one precision setting.
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    parser.add_argument(
        "--report-to",
        type=parse_trackers,
        default=(),
        metavar="TRACKERS",
        help="experiment trackers, comma-separated: tensorboard, wandb, mlflow (default none; log.jsonl always)",
    )
    add_dataclass_options(
        parser,
        SPPSCLConfig,
        skip=("preset",),
        group_title="config fields (the preset's value when one is chosen, else the default shown)",
        suppress_defaults=True,
    )


def default_run_dir(cache: str, config: SPPSCLConfig) -> Path:
    variant = config.fusion if config.head == "spp-scl" else config.head
    return Path("runs/out") / Path(cache).stem / f"{config.preset or 'custom'}-{variant}-seed{config.seed}"


def run(args: argparse.Namespace) -> int:
    try:
        fields = {key: value for key, value in dataclass_values(args, SPPSCLConfig).items() if key != "preset"}
        config = base_config(args, **fields)
    except (ValueError, TypeError) as error:
        if isinstance(error, InputError):
            raise
        args.parser.error(str(error))
    if args.mixed_precision not in (None, "no"):
        precision = {"fp16": "float16", "bf16": "bfloat16"}[args.mixed_precision]
        print(
            f"warning: --mixed-precision is deprecated and goes in 0.12: use --precision {precision}", file=sys.stderr
        )
        config = config.replace(precision=precision)
    cache = existing_file(args.cache, "--cache")
    from spp_scl.runs.train.trainer import train

    run_dir = Path(args.out) if args.out else default_run_dir(args.cache, config)
    from spp_scl.runs.train.stop_signals import TrainingInterrupted, stop_on_signals

    # --selection folds without --fold: every fold, each in <out>/fold<F>, and their mean with its interval.
    every_fold = config.selection == "folds" and "fold" not in fields
    runs = [(config.replace(fold=f), run_dir / f"fold{f}") for f in range(config.folds)] if every_fold else []
    refuse_finished([folder for _, folder in runs] or [run_dir], args.force)
    try:
        with stop_on_signals():  # Ctrl-C and SIGTERM stop between two steps; the last epoch's state is kept
            results = [train(cache, c, folder, cpu=args.cpu, report_to=args.report_to) for c, folder in runs]
            result = (
                results[-1] if every_fold else train(cache, config, run_dir, cpu=args.cpu, report_to=args.report_to)
            )
    except KeyboardInterrupt as stop:  # "a rerun resumes" holds for train only when a state was saved: say which
        restarts = "nothing to resume from: a rerun restarts from epoch 1"
        print(f"interrupted; {stop if isinstance(stop, TrainingInterrupted) else restarts}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if every_fold:
        print_fold_summary(results, run_dir)
        return 0
    for split in ("dev", "test"):
        if split in result.metrics:
            m = result.metrics[split]
            print(
                f"{split}: accuracy {m['accuracy']:.4f}  weighted F1 {m['f1_weighted']:.4f}  macro F1 {m['f1_macro']:.4f}"
            )
    print(
        f"selected epoch {result.selected_epoch} of {result.epochs_run} ({result.seconds_per_epoch:.1f} s per epoch); "
        f"run folder {result.run_dir}"
    )
    return 0


def refuse_finished(folders: list[Path], force: bool) -> None:
    """A finished run is never trained over silently: without --force, a folder holding one is refused (4).
    An unfinished one (no metrics.json: stopped, killed, failed) is not: the same command resumes or restarts it."""
    finished = [folder for folder in folders if (folder / METRICS_FILE).is_file()]
    if finished and not force:
        raise Refused(
            f"{finished[0]} holds a finished run (its {METRICS_FILE}): choose another --out, or pass --force to "
            "replace that run"
        )


def print_fold_summary(results: list, run_dir: Path) -> None:
    """Each fold's held-out metrics, and over folds mean +- std [95% interval] (spp_scl.runs.trials.statistics)."""
    from spp_scl.runs.trials.statistics import describe, spread_cell

    for fold, result in enumerate(results):
        m = result.metrics["dev"]
        print(f"fold {fold} held-out: accuracy {m['accuracy']:.4f}  weighted F1 {m['f1_weighted']:.4f}  "
              f"macro F1 {m['f1_macro']:.4f}  (epoch {result.selected_epoch})")  # fmt: skip
    for key, name in (("accuracy", "accuracy"), ("f1_weighted", "weighted F1"), ("f1_macro", "macro F1")):
        print(f"over {len(results)} folds, {name}: {spread_cell(describe([r.metrics['dev'][key] for r in results]))}")
    print(f"run folders {run_dir}/fold0 .. fold{len(results) - 1}; the test split was never opened")
