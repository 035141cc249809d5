"""Without --preset, `train` (and spp_scl.train) picks the preset the cache's dataset calls for and says so: the
paper's for a paper dataset, `own-data` (the settings that held on MVSA-Single: lr 1e-3, projection gate,
patience) for any other, nothing for a generated cache. An explicit --preset or --config wins."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import spp_scl
from spp_scl.cli import main
from spp_scl.heads.presets import OWN_DATA_PRESET, PRESETS, default_preset


def test_the_default_preset_follows_the_dataset():
    assert default_preset("hfm")[0] == "hfm"
    assert default_preset("mvsa-single") == (
        "mvsa-single",
        "no --preset: the cache holds mvsa-single, so its preset (the paper's table 2) is used",
    )
    preset, note = default_preset("posts")
    assert preset == OWN_DATA_PRESET and PRESETS[preset] == PRESETS["mvsa-single+tuned"]
    assert note == (
        "no --preset: the cache holds 'posts', not one of the paper's datasets, so the preset own-data is used "
        "(lr 0.001, projection gate, up to 40 epochs with patience 8, weight averaging 0.99, batch 64: the settings "
        "that held on MVSA-Single); --preset mvsa-single gives the paper's"
    )
    assert default_preset(None)[0] is None


@pytest.fixture(scope="module")
def own_cache(tiny, tmp_path_factory):
    """The tiny data as a user's own CSV (dataset name: the file's stem), extracted with the tiny encoders."""
    folder = tmp_path_factory.mktemp("own")
    names = ["positive", "neutral", "negative"]
    with (folder / "posts.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "text", "label", "split"])
        for split in ("train", "dev", "test"):
            for record in json.loads((Path(tiny["data"]) / f"{split}.json").read_text()):
                writer.writerow([f"images/{record['id']}.jpg", record["text"], names[record["emotion_label"]], split])
    cache = folder / "posts.h5"
    argv = ["extract", "-q", "--no-progress", "--data", str(folder / "posts.csv"), "--images", tiny["data"]]
    assert main([*argv, "--text-encoder", tiny["text"], "--image-encoder", tiny["image"], "--out", str(cache)]) == 0
    return cache


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["config"]


def test_own_data_gets_the_own_data_preset_and_is_told(own_cache, tmp_path, capsys):
    assert main(["train", "--cache", str(own_cache), "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    assert "so the preset own-data is used" in capsys.readouterr().err
    config = _config(tmp_path / "run")
    assert (config["preset"], config["lr"], config["ha_gate"], config["patience"]) == (
        "own-data",
        1e-3,
        "projection",
        8,
    )
    assert config["epochs"] == 1  # an option still wins over the preset


def test_an_explicit_preset_or_config_wins(own_cache, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--cache",
                str(own_cache),
                "--preset",
                "mvsa-single",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    assert "no --preset" not in capsys.readouterr().err
    assert (_config(tmp_path / "a")["preset"], _config(tmp_path / "a")["lr"]) == ("mvsa-single", 1e-4)
    argv = ["train", "--cache", str(own_cache), "--config", str(tmp_path / "a"), "--out", str(tmp_path / "b")]
    assert main(argv) == 0
    assert _config(tmp_path / "b")["preset"] == "mvsa-single"


def test_the_python_api_picks_the_same_preset(own_cache, tmp_path):
    run = spp_scl.train(own_cache, tmp_path / "run", epochs=1)
    assert run.config.preset == "own-data" and run.config.lr == 1e-3
