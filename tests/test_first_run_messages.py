"""Own data that works the first time (issue 25): a mistyped preset, field or option names the closest one; a
list of negative layers is a value; a finished run folder is not trained over without --force; a batch that holds
the whole train split is warned about; an extraction that keeps no record says why, with counts, examples and the
skipped.csv. Each with its exact message and exit status."""

from __future__ import annotations

import json

import pytest

from spp_scl.cli import build_parser, main, negative_values_joined
from spp_scl.core.errors import EXIT_INPUT, EXIT_REFUSED
from spp_scl.extract.pipeline import skipped_report_path


def _usage_error(argv: list[str], capsys) -> str:
    """The last line argparse prints for a bad command line (status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_a_mistyped_preset_names_the_closest(capsys):
    line = _usage_error(["train", "--cache", "c.h5", "--preset", "mvsa-singel"], capsys)
    assert line == "spp-scl train: error: argument --preset: unknown preset 'mvsa-singel'; did you mean 'mvsa-single'?"
    line = _usage_error(["sweep", "--cache", "c.h5", "--preset", "hfn"], capsys)
    assert line == "spp-scl sweep: error: argument --preset: unknown preset 'hfn'; did you mean 'hfm'?"
    line = _usage_error(["train", "--cache", "c.h5", "--preset", "zzz"], capsys)
    assert line.startswith("spp-scl train: error: argument --preset: unknown preset 'zzz'; presets: clmlf, hfm, ")
    assert build_parser().parse_args(["train", "--cache", "c.h5", "--preset", "mvsa-single+tuned"]).preset == (
        "mvsa-single+tuned"
    )


@pytest.mark.parametrize(
    "verb, option, spec, field, closest",
    [
        ("sweep", "--set", "epoch=1", "epoch", "epochs"),
        ("sweep", "--axis", "temprature=0.1,0.2", "temprature", "temperature"),
        ("sweep", "--axis", "lamda=3,5", "lamda", "lambda"),
        ("tables", "--set", "epoch=1", "epoch", "epochs"),
        ("compare", "--set", "batch-sise=8", "batch-sise", "batch_size"),
    ],
)
def test_a_mistyped_field_names_the_closest(verb, option, spec, field, closest, tmp_path, capsys):
    cache = tmp_path / "c.h5"
    cache.touch()  # tables reads its --set once the cache file is there
    where = ["--cache", str(cache)] if verb == "sweep" else ["--cache", f"mvsa-single={cache}"]
    line = _usage_error([verb, *where, option, spec, "--out", str(tmp_path / "out")], capsys)
    assert line == f"spp-scl {verb}: error: {option} {spec!r}: unknown field {field!r}; did you mean {closest!r}?"


def test_a_field_close_to_none_lists_the_fields(capsys):
    line = _usage_error(["sweep", "--cache", "c.h5", "--set", "xyzzy=1"], capsys)
    assert line.startswith("spp-scl sweep: error: --set 'xyzzy=1': unknown field 'xyzzy'; fields: embed_dim, ")


def test_a_mistyped_option_names_the_closest(capsys):
    line = _usage_error(["train", "--cache", "c.h5", "--batchsize", "3"], capsys)
    assert line == "spp-scl train: error: unrecognized arguments: --batchsize 3; did you mean --batch-size?"
    line = _usage_error(["extract", "--data", "d.csv", "--txt-layers=-1"], capsys)
    assert line == "spp-scl extract: error: unrecognized arguments: --txt-layers=-1; did you mean --text-layers?"
    line = _usage_error(["train", "--cache", "c.h5", "stray"], capsys)
    assert line == "spp-scl train: error: unrecognized arguments: stray"


def test_negative_layer_lists_are_values():
    argv = ["extract", "--data", "d.csv", "--text-layers", "-2,-1", "--view-text-layers", "-1"]
    assert negative_values_joined(argv) == [
        *("extract", "--data", "d.csv", "--text-layers=-2,-1", "--view-text-layers=-1")
    ]
    args = build_parser().parse_args(negative_values_joined(argv))
    assert (args.text_layers, args.view_text_layers) == ([-2, -1], [-1])
    assert negative_values_joined(["train", "--token-layer", "-1", "--", "--x", "-2,-1"]) == [
        *("train", "--token-layer=-1", "--", "--x", "-2,-1")  # after `--` nothing is an option
    ]
    assert negative_values_joined(["train", "--lr", "1e-3", "--cpu"]) == ["train", "--lr", "1e-3", "--cpu"]


def test_negative_layer_lists_reach_the_extraction(tiny, tmp_path, capsys):
    data = tmp_path / "empty.csv"
    data.write_text("image,text,label,split\n")
    encoders = ["--text-encoder", tiny["text"], "--image-encoder", tiny["image"]]
    status = main(
        ["extract", "--data", str(data), *encoders, "--text-layers", "-2,-1", "--out", str(tmp_path / "c.h5")]
    )
    assert status == EXIT_INPUT  # parsed: the extraction ran, and found no record
    assert capsys.readouterr().err.strip() == f"error: {data}: no usable record: it holds no records"


@pytest.fixture
def cache(synthetic_cache):
    """60 training records, as a small own data set has."""
    sizes = {"train": 60, "dev": 16, "test": 16}
    return synthetic_cache(sizes, layers=2, dim=8, map_shape=(4, 2, 2), mean_tokens=4, seed=4)


def _train(cache, out, *extra: str) -> list[str]:
    return ["train", "-q", "--cache", str(cache), "--preset", "mvsa-single", "--epochs", "1", "--out", str(out), *extra]


def test_a_finished_run_folder_is_refused_without_force(cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train(cache, out, "--batch-size", "16")) == 0
    first = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert main(_train(cache, out, "--batch-size", "16", "--seed", "7")) == EXIT_REFUSED
    assert capsys.readouterr().err.strip() == (
        f"error: {out} holds a finished run (its metrics.json): choose another --out, or pass --force to replace "
        "that run"
    )
    assert (out / "metrics.json").read_text() == first  # untouched
    assert main(_train(cache, out, "--batch-size", "16", "--seed", "7", "--force")) == 0
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 7
    # An unfinished run (no metrics.json: stopped, killed, failed) is trained again without --force.
    (out / "metrics.json").unlink()
    assert main(_train(cache, out, "--batch-size", "16")) == 0
    assert (out / "metrics.json").is_file()


def test_every_fold_folder_is_checked(cache, tmp_path, capsys):
    out = tmp_path / "folds"
    (out / "fold1").mkdir(parents=True)
    (out / "fold1" / "metrics.json").write_text("{}")
    folds = ["--selection", "folds", "--folds", "2", "--batch-size", "16"]
    assert main(_train(cache, out, *folds)) == EXIT_REFUSED
    assert f"error: {out / 'fold1'} holds a finished run" in capsys.readouterr().err


def test_a_batch_that_holds_the_train_split_is_warned_about(cache, tmp_path, capsys):
    assert main(_train(cache, tmp_path / "a")) == 0
    warning = "warning: batch size 64 >= the 60 training records: one step per epoch; use a smaller --batch-size"
    assert warning in capsys.readouterr().err.splitlines()  # the preset's batch of 64
    assert main(_train(cache, tmp_path / "b", "--batch-size", "16")) == 0
    assert "warning: batch size" not in capsys.readouterr().err


def test_no_usable_record_names_the_reasons_and_writes_the_list(tiny, tmp_path, capsys):
    rows = [
        {"image": "imgs/0.jpg", "text": "a post", "label": "pos"},  # no split
        {"image": "imgs/1.jpg", "text": "a post", "label": "neg"},  # no split
        {"image": "imgs/2.jpg", "text": "a post", "label": "pos", "split": "train"},  # no such image
        {"image": "imgs/3.jpg", "text": "a post", "label": "neg"},  # no split
    ]
    data = tmp_path / "posts.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "cache" / "posts.h5"
    encoders = ["--text-encoder", tiny["text"], "--image-encoder", tiny["image"]]
    assert main(["extract", "--data", str(data), *encoders, "--out", str(out)]) == EXIT_INPUT
    missing = (tmp_path / "imgs" / "2.jpg").resolve()
    assert capsys.readouterr().err.strip() == (
        f"error: {data}: no usable record: 4 skipped (3 x unknown split None, 1 x image not found); e.g. "
        "posts.jsonl:1 (id 'imgs/0.jpg'): unknown split None (train, dev, test); "
        f"posts.jsonl:3 (id 'imgs/2.jpg'): image not found: {missing}; "
        "posts.jsonl:2 (id 'imgs/1.jpg'): unknown split None (train, dev, test); "
        f"every skipped record with its reason: {skipped_report_path(out)}"
    )
    lines = skipped_report_path(out).read_text().splitlines()
    assert lines[0] == "split,id,source,reason" and len(lines) == 5
    assert not out.exists()
