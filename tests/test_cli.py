"""The `spp-scl` command line: every verb is there, every config field takes the same typed text in every command
that trains, a run's config.json reruns it, trackers get the epoch values, and the package imports from anywhere."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from spp_scl.cli import VERBS, build_parser
from spp_scl.cli.compare import base_configs
from spp_scl.cli.sweep import sweep_space
from spp_scl.cli.tables import base_config as tables_base_config
from spp_scl.cli.train import run as train_run
from spp_scl.core.options import dataclass_values
from spp_scl.extract.config import ExtractConfig
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.presets import resolve_config
from tests.conftest import ROOT_DIR

SPP_SCL = str(Path(sys.executable).with_name("spp-scl"))


def other_value(field: dataclasses.Field, hint) -> tuple[str, object]:
    """A valid value other than the field's default, as (command-line text, the typed value it must become),
    derived from the field's type and default, so a new field is covered without editing this test."""
    default = field.default
    base = typing.get_args(hint)[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
    if base is bool:
        return ("false", False) if default else ("true", True)
    if typing.get_origin(base) is typing.Literal:
        choice = next(c for c in typing.get_args(base) if c != default)
        return choice, choice
    if typing.get_origin(base) is tuple:
        values = tuple(round(v * 0.99, 6) for v in default)
        return ",".join(map(str, values)), values
    if base is int:
        value = 3 if default is None else default + 3
        return str(value), value
    if base is float:
        value = round(default * 0.5, 6) if default else 0.25
        return str(value), value
    raise AssertionError(f"no test value for {field.name}: {hint}")


def as_text(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


FIELDS = [f for f in dataclasses.fields(SPPSCLConfig) if f.name != "preset"]
HINTS = typing.get_type_hints(SPPSCLConfig)


@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_every_config_field_through_every_parser_that_trains(field, tmp_path):
    text, value = other_value(field, HINTS[field.name])
    parser = build_parser()
    flag = "--" + field.name.replace("_", "-")
    # train: --FIELD VALUE (and, for the base the preset gives, the value wins over the preset)
    args = parser.parse_args(["train", "--cache", "c.h5", "--preset", "mvsa-single", flag, text])
    assert dataclass_values(args, SPPSCLConfig)[field.name] == value
    # sweep --set FIELD=VALUE, and an axis of two values (tuples in brackets)
    args = parser.parse_args(["sweep", "--cache", "c.h5", "--set", f"{field.name}={text}"])
    assert getattr(sweep_space(args)[0], field.name) == value
    default_text = as_text(field.default)
    axis = f"({text}),({default_text})" if isinstance(value, tuple) else f"{text},{default_text}"
    args = parser.parse_args(["sweep", "--cache", "c.h5", "--axis", f"{field.name}={axis}"])
    if field.name == "seed":
        with pytest.raises(ValueError, match="seeds are set with --seeds"):
            sweep_space(args)
    else:
        assert sweep_space(args)[1][field.name][0] == value
    # tables and compare: --set on the dataset's preset
    args = parser.parse_args(["tables", "--cache", "mvsa-single=c.h5", "--set", f"{field.name}={text}"])
    assert getattr(tables_base_config(args, "mvsa-single"), field.name) == value
    args = parser.parse_args(["compare", "--cache", "hfm=c.h5", "--set", f"{field.name}={text}"])
    assert getattr(base_configs(args, {"hfm": "c.h5"})["hfm"], field.name) == value


def test_betas_from_every_command(capsys):
    parser = build_parser()
    args = parser.parse_args(["train", "--cache", "c.h5", "--betas", "0.9,0.99"])
    assert dataclass_values(args, SPPSCLConfig)["betas"] == (0.9, 0.99)
    args = parser.parse_args(["sweep", "--cache", "c.h5", "--set", "betas=0.9,0.99"])
    assert sweep_space(args)[0].betas == (0.9, 0.99)
    args = parser.parse_args(["sweep", "--cache", "c.h5", "--axis", "betas=(0.9,0.99),(0.8,0.999)"])
    assert sweep_space(args)[1]["betas"] == [(0.9, 0.99), (0.8, 0.999)]
    # One number is a clear usage error, not a traceback.
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["train", "--cache", "c.h5", "--betas", "0.9"])
    assert exit_info.value.code == 2
    assert "argument --betas: expected 2 comma-separated values, got '0.9'" in capsys.readouterr().err
    args = parser.parse_args(["sweep", "--cache", "c.h5", "--axis", "betas=0.9,0.99"])
    with pytest.raises(ValueError, match=r"in brackets"):
        sweep_space(args)


def test_every_extract_option_comes_from_its_dataclass():
    parser = build_parser()
    args = parser.parse_args(
        [
            "extract",
            "--data",
            "d",
            "--text-layers",
            "9,10",
            "--classes",
            "a,b",
            "--force",
            "--no-progress",
            "--dtype",
            "float32",
            "--image-crop",
            "none",
            "--max-length",
            "64",
        ]
    )
    config = ExtractConfig(**dataclass_values(args, ExtractConfig))
    assert (config.text_layers, config.classes, config.force, config.progress) == ([9, 10], ["a", "b"], True, False)
    assert (config.dtype, config.image_crop, config.max_length, config.text_encoder) == (
        "float32",
        None,
        64,
        "bert-base-uncased",
    )
    help_text = parser._subparsers._group_actions[0].choices["extract"].format_help()
    for field in dataclasses.fields(ExtractConfig):
        assert "--" + field.name.replace("_", "-") in help_text, field.name


@pytest.mark.slow
def test_help_lists_every_verb_and_the_exit_statuses():
    result = subprocess.run([SPP_SCL, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for verb in VERBS:
        assert f"\n    {verb} " in result.stdout, verb
    assert "exit statuses" in result.stdout and "refused" in result.stdout
    for verb in VERBS:
        assert subprocess.run([SPP_SCL, verb, "--help"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="module")
def small_cache(synthetic_cache):
    return synthetic_cache(
        {"train": 48, "dev": 16, "test": 16},
        layers=2,
        dim=16,
        map_shape=(8, 2, 2),
        mean_tokens=5,
        signal=0.6,
        seed=2,
    )


def test_config_file_reruns_a_run_and_options_override_it(small_cache, tmp_path):
    parser = build_parser()
    first = tmp_path / "first"
    argv = [
        "train",
        "--cache",
        str(small_cache),
        "--preset",
        "hfm",
        "--epochs",
        "2",
        "--betas",
        "0.8,0.99",
        "--batch-size",
        "16",
        "--out",
        str(first),
    ]
    args = parser.parse_args(argv)
    assert train_run(args) == 0
    rerun = tmp_path / "rerun"
    args = parser.parse_args(["train", "--cache", str(small_cache), "--config", str(first), "--out", str(rerun)])
    assert train_run(args) == 0
    assert (
        json.loads((rerun / "config.json").read_text())["config"]
        == json.loads((first / "config.json").read_text())["config"]
    )
    assert (rerun / "metrics.json").read_text() == (first / "metrics.json").read_text()  # same seed, same numbers
    args = parser.parse_args(
        [
            "train",
            "--cache",
            str(small_cache),
            "--config",
            str(first / "config.json"),
            "--seed",
            "7",
            "--out",
            str(tmp_path / "seed7"),
        ]
    )
    assert train_run(args) == 0
    config = json.loads((tmp_path / "seed7" / "config.json").read_text())["config"]
    assert (config["seed"], config["preset"], config["betas"], config["ce_weight"]) == (7, "hfm", [0.8, 0.99], 10.0)


def test_tensorboard_tracker_gets_every_epoch_under_namespaced_keys(small_cache, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "tracked"
    args = build_parser().parse_args(
        [
            "train",
            "--cache",
            str(small_cache),
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--report-to",
            "tensorboard",
            "--out",
            str(run_dir),
        ]
    )
    assert train_run(args) == 0
    event_files = list((run_dir / "trackers").rglob("events.out.tfevents.*"))
    assert event_files, "no TensorBoard event file written"
    events = EventAccumulator(str(event_files[0].parent)).Reload()
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    tags = events.Tags()["scalars"]
    for key, tag in (("dev_accuracy", "dev/accuracy"), ("loss_step_one", "train/loss_step_one"), ("lr", "train/lr")):
        assert tag in tags, (tag, tags)
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [line["epoch"] for line in log]
        assert [s.value for s in scalars] == pytest.approx([line[key] for line in log], rel=1e-6)
    assert "selected/dev_accuracy" in tags


def test_bad_tracker_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--cache", "c.h5", "--report-to", "tensorbored"])
    assert exit_info.value.code == 2 and "unknown tracker(s) tensorbored" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["sweep", "tables", "compare"])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_group_size_below_one_is_a_usage_error(verb, value, capsys):
    cache = ["--cache", "c.h5"] if verb == "sweep" else ["--cache", "mvsa-single=c.h5"]
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([verb, *cache, "--group-size", value])
    assert exit_info.value.code == 2 and f"at least 1; got '{value}'" in capsys.readouterr().err


@pytest.mark.slow
def test_training_launched_as_two_processes_is_refused(small_cache, tmp_path):
    # torchrun starts the processes as `accelerate launch` does on a GPU machine (on a CPU-only machine accelerate
    # launch starts a single process unless MPI is set up).
    launcher = str(Path(sys.executable).with_name("torchrun"))
    command = [
        "-m",
        "spp_scl.cli",
        "train",
        "--cache",
        str(small_cache),
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
    ]
    result = subprocess.run(
        [launcher, "--nproc_per_node", "2", *command],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode != 0
    assert "training runs in one process, but this is one of 2" in result.stderr
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_package_imports_from_another_directory(tmp_path):
    code = (
        "import spp_scl, spp_scl.heads, spp_scl.cache, spp_scl.extract, spp_scl.runs, spp_scl.core; "
        "from spp_scl.heads import SPPSCLHead; print(spp_scl.__version__)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __import__("spp_scl").__version__


def test_a_users_own_modules_named_like_the_layers_break_nothing(tmp_path):
    """The tool installs no top-level `cache`, `extract`, `heads` or `runs`: a user's own files of those names in
    the working directory (first on sys.path) neither shadow the tool nor are shadowed by it."""
    for name in ("cache", "extract", "heads", "runs", "core", "cli"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    for command in (
        [sys.executable, "-m", "spp_scl", "train", "--help"],
        [sys.executable, "-c", "import spp_scl.runs.train.trainer, spp_scl.extract.pipeline, spp_scl.cli"],
    ):
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    (tmp_path / "empty").mkdir()
    installed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util as u; print([n for n in ('cache', 'extract', 'heads', 'runs') if u.find_spec(n)])",
        ],
        cwd=tmp_path / "empty",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.stdout.strip() == "[]", "a top-level module of the tool is installed"


@pytest.mark.slow
def test_extract_script_path_still_works(tiny, tmp_path):
    out = tmp_path / "c.h5"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT_DIR / "extract" / "run.py"),
            "--data",
            tiny["data"],
            "--dataset",
            "mvsa-single",
            "--text-encoder",
            tiny["text"],
            "--image-encoder",
            tiny["image"],
            "--out",
            str(out),
            "--no-progress",
            "--text-layers=-2,-1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "written" in result.stdout and out.is_file()


def test_no_sys_path_edits_left_in_the_project():
    offenders = [
        str(path.relative_to(ROOT_DIR))
        for folder in ("extract", "cache", "heads", "runs", "spp_scl", "bench", "tests")
        for path in (ROOT_DIR / folder).rglob("*.py")
        if path != Path(__file__) and ("sys.path" + "[" in path.read_text() or "sys.path.insert" in path.read_text())
    ]
    assert offenders == []


def test_resolve_config_and_the_command_line_agree_on_presets():
    args = build_parser().parse_args(["train", "--cache", "c.h5", "--preset", "hfm", "--faithful"])
    from spp_scl.cli.common import base_config

    fields = {k: v for k, v in dataclass_values(args, SPPSCLConfig).items() if k != "preset"}
    assert base_config(args, **fields) == resolve_config("hfm", faithful=True)
