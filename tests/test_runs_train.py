"""The trainer: it learns from a cache alone, is deterministic, writes a complete run folder, and a saved run
reproduces its own predictions."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.checkpoint import load_head
from spp_scl.runs.train.trainer import open_splits, train
from spp_scl.runs.train.trial_run import predict


@pytest.fixture(scope="module")
def learnable(synthetic_cache):
    return synthetic_cache(
        {"train": 192, "dev": 72, "test": 72},
        layers=4,
        dim=32,
        map_shape=(24, 4, 4),
        mean_tokens=10,
        signal=0.6,
        seed=1,
    )


def _config(**overrides):
    return resolve_config("mvsa-single", **{"epochs": 10, "batch_size": 32, "lr": 2e-3, "lr_step_size": 5, **overrides})


@pytest.fixture(scope="module")
def trained(learnable, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    return train(learnable, _config(), run_dir, log=lambda *_: None)


def test_training_learns_clearly_better_than_chance(trained):
    assert trained.metrics["dev"]["accuracy"] > 0.75  # three balanced classes: chance is about 0.33
    assert trained.metrics["test"]["accuracy"] > 0.75


def test_run_folder_is_complete(trained, learnable):
    run_dir = trained.run_dir
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"] == _config().to_dict()
    assert config["cache_fingerprint"]["synthetic"]["seed"] == 1
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in log] == list(range(1, 11))
    assert {"loss_step_one", "ce", "intra_image", "intra_text", "inter", "step_two_rate", "dev_f1_weighted"} <= log[
        0
    ].keys()
    assert [line["lr"] for line in log] == pytest.approx([2e-3] * 5 + [1e-3] * 5)  # StepLR every 5 epochs, x 0.5
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = max(log, key=lambda line: line["dev_f1_weighted"])
    assert metrics["selected_epoch"] == best["epoch"]
    assert metrics["dev"]["f1_weighted"] == pytest.approx(best["dev_f1_weighted"])
    for split in ("dev", "test"):
        assert {"accuracy", "f1_weighted", "f1_macro", "per_class", "confusion_matrix"} <= metrics[split].keys()
        assert np.asarray(metrics[split]["confusion_matrix"]).sum() == 72
    with (run_dir / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 144 and set(rows[0]) == {
        "split",
        "id",
        "label",
        "prediction",
        "p_class0",
        "p_class1",
        "p_class2",
    }
    dev_rows = [r for r in rows if r["split"] == "dev"]
    accuracy = np.mean([r["label"] == r["prediction"] for r in dev_rows])
    assert accuracy == pytest.approx(metrics["dev"]["accuracy"])


def test_saved_run_reproduces_its_dev_predictions(trained, learnable):
    model, config, meta = load_head(trained.run_dir)
    dev = open_splits(learnable, config)["dev"]
    ids, _, probabilities = predict(model, dev, 7, "cpu")  # another batch size: the default fusion does not care
    with (trained.run_dir / "predictions.csv").open() as handle:
        saved = [r for r in csv.DictReader(handle) if r["split"] == "dev"]
    assert ids == [r["id"] for r in saved]
    stored = np.array([[float(r[f"p_{name}"]) for name in meta["class_names"]] for r in saved])
    np.testing.assert_allclose(probabilities, stored, atol=2e-6)


def test_same_seed_same_metrics_to_the_last_digit(learnable, tmp_path):
    first = train(learnable, _config(epochs=3), tmp_path / "a", log=lambda *_: None)
    second = train(learnable, _config(epochs=3), tmp_path / "b", log=lambda *_: None)
    assert first.metrics == second.metrics
    assert (tmp_path / "a" / "predictions.csv").read_text() == (tmp_path / "b" / "predictions.csv").read_text()
    train(learnable, _config(epochs=3, seed=7), tmp_path / "c", log=lambda *_: None)
    assert (tmp_path / "c" / "predictions.csv").read_text() != (tmp_path / "a" / "predictions.csv").read_text()


@pytest.mark.parametrize(
    "overrides",
    [
        {"two_step": False},
        {"intra_loss": False},
        {"inter_loss": False},
        {"fusion": "concat"},
        {"fusion": "cmf-batch"},
        {"modality": "text"},
        {"modality": "image"},
        {"text_layers_last": 2},
    ],
)
def test_ablation_switches_train_from_the_same_cache(learnable, tmp_path, overrides):
    result = train(learnable, _config(epochs=2, **overrides), tmp_path, log=lambda *_: None)
    assert 0.0 <= result.metrics["dev"]["accuracy"] <= 1.0
    head = json.loads((tmp_path / "head.json").read_text())
    assert head["config"] == _config(epochs=2, **overrides).to_dict()
    if "text_layers_last" in overrides:
        assert head["num_layers"] == 2 and head["text_layers"] == [11, 12]


def test_patience_stops_early(learnable, tmp_path):
    result = train(learnable, _config(epochs=30, patience=2, lr=1e-9), tmp_path, log=lambda *_: None)
    assert result.epochs_run < 30 and result.epochs_run - result.selected_epoch == 2


def test_command_line_overrides_and_errors(learnable, tmp_path):
    script = ["-m", "spp_scl", "train"]
    out = tmp_path / "cli"
    result = subprocess.run(
        [
            sys.executable,
            *script,
            "--cache",
            str(learnable),
            "--preset",
            "hfm",
            "--epochs",
            "2",
            "--two-step",
            "false",
            "--theta",
            "0.5",
            "--text-layers-last",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["preset"], config["ce_weight"], config["batch_size"], config["selection_metric"]) == (
        "hfm",
        10.0,
        256,
        "f1_macro",
    )
    assert (config["two_step"], config["theta"], config["text_layers_last"], config["epochs"]) == (False, 0.5, 3, 2)
    bad = subprocess.run(
        [sys.executable, *script, "--cache", str(learnable), "--fusion", "sum"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "argument --fusion: expected one of cmf-bank, cmf-batch, concat" in bad.stderr
    missing = subprocess.run(
        [sys.executable, *script, "--cache", str(tmp_path / "nope.h5")], capture_output=True, text=True
    )
    assert missing.returncode == 3 and "--cache" in missing.stderr and "no such file" in missing.stderr
