"""Options shared by the verbs that train: where the base config comes from (--preset, --config, --faithful),
fixed values for every trial (--set), and named caches (--cache DATASET=PATH)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from spp_scl.core.errors import InputError
from spp_scl.core.options import did_you_mean
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.presets import PRESETS, resolve_config

TRACKERS = ("tensorboard", "wandb", "mlflow")


def add_config_source(parser: argparse.ArgumentParser, preset_help: str | None = None) -> None:
    parser.add_argument(
        "--preset",
        type=preset_name,
        metavar="{" + ",".join(sorted(PRESETS)) + "}",
        help=preset_help
        or "the paper's hyper-parameters for a dataset (table 2); DATASET+clmlf / +mdse for the compared heads; "
        "mvsa-single+tuned: beyond the paper, what won on MVSA-Single dev here (docs/results/mvsa-single-accuracy.md)",
    )
    parser.add_argument(
        "--config",
        metavar="RUN_DIR|config.json",
        help="start from a run's resolved config (its folder or config.json) instead of a preset, to rerun it",
    )
    parser.add_argument(
        "--faithful", action="store_true", help="the paper-faithful variant: CMF attends over the batch (cmf-batch)"
    )


def preset_name(text: str) -> str:
    """An argparse type: a preset's name; a mistyped one names the closest ("did you mean 'mvsa-single'?")."""
    if text in PRESETS:
        return text
    hint = did_you_mean(text, sorted(PRESETS)) or f"; presets: {', '.join(sorted(PRESETS))}"
    raise argparse.ArgumentTypeError(f"unknown preset {text!r}{hint}")


def add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a config value for every trial, typed like `spp-scl train --FIELD` (e.g. epochs=50, betas=0.9,0.99)",
    )


def whole_number(what: str, minimum: int):
    """An argparse type: a whole number of at least `minimum`, or an error naming `what` is expected."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, at least {minimum}; got {text!r}")
        return value

    return parse


def add_group_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--group-size",
        type=whole_number("a whole number of trials", 1),
        default=None,
        metavar="N",
        help="train up to N pending trials that read the same batches (one seed, fold and batch size) "
        "interleaved: each batch read once, every trial's step on it in turn, each trial as trained alone; "
        "1 = every trial alone (default: groups of 8 when the train split is read from the cache file batch by "
        "batch, alone when it fits in memory, where groups were no faster: docs/benchmarks.md)",
    )


def add_folds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--folds",
        type=whole_number("a number of folds", 2),
        default=None,
        metavar="K",
        help="k-fold selection: every trial once per fold of K stratified folds over train+dev, its checkpoint "
        "selected and scored on the held-out part; the test split is never opened; tables pair rows fold by fold "
        "(default: select on the cache's dev split)",
    )


def run_dataset_trials(args: argparse.Namespace, cache, base: SPPSCLConfig, trials: list, folder: Path) -> list[dict]:
    """spp_scl.runs.trials.executor.run_trials for one dataset's trials (once per fold with --folds), into
    folder/results.jsonl and folder/trials, with the verb's --jobs and --group-size."""
    from spp_scl.runs.trials.executor import over_folds, run_trials

    trials = over_folds(trials, getattr(args, "folds", None))
    return run_trials(
        cache, base, trials, folder / "results.jsonl", folder / "trials", jobs=args.jobs, group_size=args.group_size
    )


def add_data_note(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-note",
        metavar="TEXT",
        help="a note on the data for every output's title and JSON (data_note); the built-in demo passes "
        "'DEMO: generated data, not MVSA', so that its tables are never read as measured on MVSA",
    )


def add_named_caches(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache",
        action="append",
        required=True,
        metavar="DATASET=PATH",
        help="a dataset's cache (repeatable; a missing file is skipped); the dataset name picks the preset "
        "(mvsa-single, mvsa-multiple, hfm, mmsd2)",
    )


def read_config_file(path: str) -> SPPSCLConfig:
    """A run folder, its config.json, or a bare config dict in JSON -> the config it holds."""
    file = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    try:
        values = json.loads(file.read_text())
    except FileNotFoundError:
        raise InputError(f"--config {path}: no such run folder or file") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"--config {file}: not readable as JSON ({error})") from None
    values = values.get("config", values) if isinstance(values, dict) else values
    if not isinstance(values, dict):
        raise InputError(f"--config {file}: expected a JSON object of config fields")
    try:
        return SPPSCLConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise InputError(f"--config {file}: {error}") from None


def base_config(args: argparse.Namespace, **overrides) -> SPPSCLConfig:
    """The preset's config or the --config file's, then --faithful, then `overrides`. Without either, the preset
    the cache's dataset calls for (spp_scl.heads.presets.default_preset), said on stderr."""
    if args.config and args.preset:
        raise InputError("give --preset or --config, not both (a run's config already holds its preset's values)")
    if not args.config and not args.preset and getattr(args, "cache", None) and Path(args.cache).is_file():
        from spp_scl.heads.presets import cache_preset

        args.preset, note = cache_preset(args.cache)
        if note:
            logging.getLogger(__name__).info(note)
    if args.config:
        base = read_config_file(args.config)
        return base.replace(**({"fusion": "cmf-batch"} if args.faithful else {}), **overrides)
    return resolve_config(args.preset, faithful=args.faithful, **overrides)


def parse_trackers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip() and name.strip() != "none")
    unknown = [name for name in names if name not in TRACKERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown tracker(s) {', '.join(unknown)}; choose from {', '.join(TRACKERS)}")
    return names


def existing_file(path: str, option: str) -> Path:
    if not Path(path).is_file():
        raise InputError(f"{option} {path}: no such file")
    return Path(path)
