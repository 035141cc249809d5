"""`extract --split 0.8,0.1,0.1 --split-seed N`: splits drawn for a data file that has none, stratified by label,
reproducible, independent of which images turn out unusable, and recorded in the cache's fingerprint; a file
without splits and without the option, or with both, is a one-line error that names the fix."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import h5py
import pytest

from spp_scl.cli import main
from spp_scl.core.errors import EXIT_INPUT, EXIT_REFUSED
from spp_scl.extract.records import read_dataset
from spp_scl.extract.split_assignment import assign_splits


def test_each_class_is_cut_at_the_shares_and_the_seed_decides_which_rows():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    splits = assign_splits(labels, [0.8, 0.1, 0.1], seed=0)
    counts = Counter(zip(labels, splits))
    assert [counts[(label, split)] for label in "abc" for split in ("train", "dev", "test")] == [
        *(48, 6, 6),
        *(24, 3, 3),
        *(8, 1, 1),
    ]
    assert assign_splits(labels, [0.8, 0.1, 0.1], seed=0) == splits  # reproducible
    assert assign_splits(labels, [0.8, 0.1, 0.1], seed=1) != splits  # another seed, other rows
    assert set(assign_splits(labels, [0.7, 0.3], seed=0)) == {"train", "dev"}  # two shares: no test


@pytest.mark.parametrize(
    "shares, message",
    [
        ([0.8, 0.3], "split shares must sum to 1; 0.8,0.3 sum to 1.1"),
        ([1.0], "split needs 2 or 3 shares (train,dev[,test]), got 1"),
        ([0.0, 0.5, 0.5], "split shares must be 0 or more, train's above 0; got 0.0,0.5,0.5"),
    ],
)
def test_bad_shares_are_named(shares, message):
    with pytest.raises(ValueError) as error:
        assign_splits(["a", "b"], shares, seed=0)
    assert str(error.value) == message


def _posts(tiny, path: Path, split_column: bool = False) -> Path:
    """A CSV of the tiny dataset's train and dev records (40 + 12), without a split column."""
    folder = Path(tiny["data"])
    records = [*json.loads((folder / "train.json").read_text()), *json.loads((folder / "dev.json").read_text())]
    names = ["positive", "neutral", "negative"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "text", "label"] + (["split"] if split_column else []))
        for record in records:
            row = [f"images/{record['id']}.jpg", record["text"], names[record["emotion_label"]]]
            writer.writerow(row + (["train"] if split_column else []))
    return path


def test_a_file_without_splits_gets_them_drawn_and_recorded(tiny, tmp_path):
    posts = _posts(tiny, Path(tiny["data"]) / f"posts-{tmp_path.name}.csv")
    dataset = read_dataset(posts, "mvsa-single", split=[0.6, 0.2, 0.2], split_seed=3)
    splits = Counter(record.split for record in dataset.records)
    assert sum(splits.values()) == 52 and set(splits) == {"train", "dev", "test"}
    assert dataset.policy == {"allow_non_english": False, "split": [0.6, 0.2, 0.2], "split_seed": 3}
    by_id = {record.id: record.split for record in dataset.records}
    # An image that turns out unusable skips its record and moves no other record to another split.
    gone = dataset.records[0]
    gone.image.rename(gone.image.with_suffix(".gone"))
    try:
        again = read_dataset(posts, "mvsa-single", split=[0.6, 0.2, 0.2], split_seed=3)
    finally:
        gone.image.with_suffix(".gone").rename(gone.image)
    assert {record.id: record.split for record in again.records} == {k: v for k, v in by_id.items() if k != gone.id}


def test_a_file_without_splits_and_without_the_option_names_the_option(tiny, tmp_path, capsys):
    posts = _posts(tiny, tmp_path / "posts.csv")
    encoders = ["--text-encoder", tiny["text"], "--image-encoder", tiny["image"]]
    status = main(
        ["extract", "--data", str(posts), "--images", tiny["data"], *encoders, "--out", str(tmp_path / "c.h5")]
    )
    assert status == EXIT_INPUT
    assert capsys.readouterr().err.strip() == (
        f"error: {posts}: no row has a split (train, dev, test): add a split column, or let extract draw one, "
        "e.g. --split 0.8,0.1,0.1 --split-seed 0"
    )


def test_splits_given_and_drawn_at_once_is_refused(tiny, tmp_path, capsys):
    posts = _posts(tiny, tmp_path / "posts.csv", split_column=True)
    encoders = ["--text-encoder", tiny["text"], "--image-encoder", tiny["image"]]
    argv = ["extract", "--data", str(posts), "--images", tiny["data"], *encoders, "--split", "0.8,0.2", "--out", "c.h5"]
    assert main(argv) == EXIT_INPUT
    assert capsys.readouterr().err.strip() == (
        f"error: {posts}: 52 of 52 rows have a split, and --split draws them: remove the split values or the "
        "--split option"
    )
    assert main(["extract", "--data", tiny["data"], "--dataset", "mvsa-single", *encoders, "--split", "0.8,0.2"]) == 3
    assert capsys.readouterr().err.strip() == (
        f"error: --split draws the splits of a .jsonl / .csv file; {tiny['data']} is a split folder, whose files "
        "are its splits"
    )


def test_bad_shares_on_the_command_line_are_an_option_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["extract", "--data", "posts.csv", "--split", "0.8,0.3"])
    assert exit_.value.code == 2
    assert "split shares must sum to 1; 0.8,0.3 sum to 1.1" in capsys.readouterr().err


def test_the_drawn_splits_reach_the_cache_and_another_seed_is_refused(tiny, tmp_path, capsys):
    posts = _posts(tiny, tmp_path / "posts.csv")
    out = tmp_path / "c.h5"
    common = ["extract", "-q", "--data", str(posts), "--images", tiny["data"], "--dataset", "mvsa-single"]
    common += ["--text-encoder", tiny["text"], "--image-encoder", tiny["image"], "--no-progress", "--out", str(out)]
    assert main([*common, "--split", "0.6,0.2,0.2", "--split-seed", "3"]) == 0
    drawn = read_dataset(posts, "mvsa-single", tiny["data"], split=[0.6, 0.2, 0.2], split_seed=3)
    expected = Counter(record.split for record in drawn.records)
    with h5py.File(out, "r") as cache:
        assert {split: len(cache[split]["labels"]) for split in ("train", "dev", "test")} == expected
        fingerprint = json.loads(cache.attrs["fingerprint"])
    assert fingerprint["dataset"]["policy"]["split"] == [0.6, 0.2, 0.2]
    capsys.readouterr()
    assert main([*common, "--split", "0.6,0.2,0.2", "--split-seed", "4"]) == EXIT_REFUSED
    assert "split_seed: cache has 3, this run asks 4" in capsys.readouterr().err
