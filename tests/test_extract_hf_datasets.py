"""Datasets of the Hugging Face `datasets` library (saved folders; a hub name takes the same reader after
load_dataset): the same records and features as the split files they were made from, a changed dataset refused,
and one-line errors for what cannot be read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spp_scl.extract.pipeline import CacheMismatch, run
from spp_scl.extract.records import BadInput, read_dataset
from spp_scl.extract.standard_splits import content_sha256, split_note
from tests.conftest import cache_contents, tiny_config

datasets = pytest.importorskip("datasets")
CLASSES = ["positive", "neutral", "negative"]


def feature_arrays(path) -> dict:
    """Every array of a cache (ids, labels, features, offsets), without the file's attributes."""
    return {key: value for key, value in cache_contents(path).items() if not key.startswith("@") and "/" in key}


def assert_same_features(a, b) -> None:
    first, second = feature_arrays(a), feature_arrays(b)
    assert first.keys() == second.keys() and any(key.endswith("image_maps") for key in first)
    for key in first:
        assert np.array_equal(np.asarray(first[key]), np.asarray(second[key])), f"{key} differs"


@pytest.fixture(scope="module")
def split_cache(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "cache.h5"
    run(tiny_config(tiny, path), log=lambda *_: None)
    return path


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    from spp_scl.extract.hf_dataset import save_split_folder

    return save_split_folder(tiny["data"], "mvsa-single", tmp_path_factory.mktemp("hf") / "saved")


def test_a_saved_dataset_with_an_image_column_gives_the_split_files_features(tiny, split_cache, saved, tmp_path):
    assert (saved / "dataset_dict.json").is_file()
    cache = tmp_path / "hf.h5"
    run(tiny_config(tiny, cache, data=str(saved)), log=lambda *_: None)
    assert_same_features(split_cache, cache)


def test_a_saved_dataset_with_a_path_column_reads_its_images_from_the_images_folder(tiny, split_cache, tmp_path):
    folder = Path(tiny["data"])
    splits = {}
    for split, name in (("train", "train"), ("dev", "validation"), ("test", "test")):
        rows = json.loads((folder / f"{split}.json").read_text())
        splits[name] = datasets.Dataset.from_dict(
            {
                "tweet_id": [row["id"] for row in rows],
                "sentence": [row["text"] for row in rows],
                "file": [f"{row['id']}.jpg" for row in rows],
                "sentiment": [CLASSES[int(row["emotion_label"])] for row in rows],
            }
        )
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "paths"))
    cache = tmp_path / "paths.h5"
    config = tiny_config(
        tiny, cache, data=str(tmp_path / "paths"), images=str(folder / "images"), image_column="file"
    )  # text, id and label columns found by name: sentence, tweet_id, sentiment
    run(config, log=lambda *_: None)
    assert_same_features(split_cache, cache)


def test_a_changed_dataset_is_refused_like_a_changed_file(tiny, saved, tmp_path):
    copy = tmp_path / "saved"
    shutil.copytree(saved, copy)
    cache = tmp_path / "cache.h5"
    run(tiny_config(tiny, cache, data=str(copy)), log=lambda *_: None)
    loaded = datasets.load_from_disk(str(copy))
    changed = loaded["train"].map(
        lambda row, i: {"text": row["text"] + (" again" if i == 0 else "")}, with_indices=True
    )
    edited = datasets.DatasetDict({**loaded, "train": changed})
    edited.save_to_disk(str(tmp_path / "edited"))
    shutil.rmtree(copy)
    shutil.move(tmp_path / "edited", copy)
    with pytest.raises(CacheMismatch, match=r"dataset\.sources_sha256\.train\.fingerprint: cache has"):
        run(tiny_config(tiny, cache, data=str(copy)), log=lambda *_: None)


def test_splits_map_to_train_dev_test_and_the_others_are_named(tmp_path):
    rows = {"text": ["good day", "bad day"], "image": ["a.jpg", "b.jpg"], "label": [0, 1]}
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "b.jpg").write_bytes(b"")
    datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(rows) for name in ("train", "validation", "extra")}
    ).save_to_disk(str(tmp_path / "d"))
    read = read_dataset(str(tmp_path / "d"), images=tmp_path)
    assert [record.split for record in read.records] == ["train", "train", "dev", "dev"]
    assert [record.id for record in read.records] == ["train[0]", "train[1]", "validation[0]", "validation[1]"]
    assert read.policy["splits_left_out"] == ["extra"]
    assert read.class_names == ["0", "1"] and read.inferred_classes


def test_class_label_names_and_a_known_dataset_name_the_classes(tmp_path):
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "image": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["no", "yes"]),
        }
    )
    (tmp_path / "a.jpg").write_bytes(b"")
    table = datasets.Dataset.from_dict({"text": ["so great"], "image": ["a.jpg"], "label": [1]}, features=features)
    table.save_to_disk(str(tmp_path / "one"))  # a single Dataset, read as train
    assert read_dataset(str(tmp_path / "one"), images=tmp_path).class_names == ["no", "yes"]
    read = read_dataset(str(tmp_path / "one"), "mmsd2", images=tmp_path)
    assert read.class_names == ["not-sarcastic", "sarcastic"] and read.records[0].label == 1
    unlabelled = datasets.Dataset.from_dict(
        {"text": ["so great", "no idea"], "image": ["a.jpg", "a.jpg"], "label": [1, -1], "id": ["1", "2"]},
        features=datasets.Features({**features, "id": datasets.Value("string")}),
    )
    unlabelled.save_to_disk(str(tmp_path / "unlabelled"))  # ClassLabel -1: no label, as in hub test splits
    read = read_dataset(str(tmp_path / "unlabelled"), images=tmp_path)
    assert [record.id for record in read.records] == ["1"]
    assert [(item.id, item.reason) for item in read.skipped] == [("2", "label is not one of the dataset's classes")]


def test_a_missing_column_is_one_line_naming_the_columns(tmp_path):
    datasets.Dataset.from_dict({"caption": ["x"], "picture": ["a.jpg"], "label": [0]}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(BadInput, match=r"no image column among caption, picture, label; name it with --image-column"):
        read_dataset(str(tmp_path / "d"), images=tmp_path)
    with pytest.raises(BadInput, match=r"no column 'img' for the image \(columns: caption, picture, label\)"):
        read_dataset(str(tmp_path / "d"), images=tmp_path, columns={"image": "img"})
    # Through load_dataset, as a hub name goes (a local folder of data files needs no network).
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "train.csv").write_text("caption,picture,label\nx,a.jpg,0\n")
    with pytest.raises(BadInput, match="image column 'picture' holds paths: give their folder with --images"):
        read_dataset("hf:" + str(tmp_path / "files"), columns={"image": "picture"})
    with pytest.raises(BadInput, match=r"^--data hf:\S+: the datasets library cannot load it: "):
        read_dataset("hf:" + str(tmp_path / "no-such"))


def test_the_standard_split_is_recognised_by_content_and_a_different_one_is_named(tiny, monkeypatch):
    folder = Path(tiny["data"])
    rows = {split: json.loads((folder / f"{split}.json").read_text()) for split in ("train", "dev")}
    standard = {split: (len(found), content_sha256(found)) for split, found in rows.items()}
    monkeypatch.setitem(__import__("spp_scl.extract.standard_splits", fromlist=["x"]).STANDARD_SPLITS, "demo", standard)
    reindented = {split: json.loads(json.dumps(found, indent=4)) for split, found in rows.items()}
    assert split_note("demo", reindented) == "note: the standard CLMLF split of demo (train, dev match)"
    fewer = {"train": rows["train"][:-1], "dev": rows["dev"]}
    assert split_note("demo", fewer) == (
        "note: not the standard CLMLF split of demo: train (39 records, the standard 40) differ; results on it are "
        "not comparable with the papers' numbers"
    )
    swapped = {"train": rows["train"][::-1], "dev": rows["dev"], "test": []}
    assert "train (40 records, the standard 40; the same number, other content or order)" in split_note("demo", swapped)
    assert (
        split_note("hfm", {"train": rows["train"]}) == "note: train: no standard split on record here to compare with"
    )
