"""The linear probe: its pooled features, its fit and its checkpoint agree with independent computations."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.checkpoint import load_head
from spp_scl.runs.train.trainer import open_splits, train
from spp_scl.runs.train.trial_run import predict


def _cache(tmp_path, num_classes=3, signal=0.5):
    return write_synthetic_cache(
        tmp_path / f"probe{num_classes}.h5",
        {"train": 90, "dev": 30, "test": 30},
        num_classes=num_classes,
        layers=3,
        dim=12,
        map_shape=(10, 2, 3),
        mean_tokens=6,
        signal=signal,
        seed=5,
    )


def naive_features(path, split: str, modality: str = "both", last_layers: int = 3) -> np.ndarray:
    """Straight from the HDF5 arrays, one record at a time: each layer's mean over the record's own tokens, then the
    image map's mean over positions."""
    rows = []
    with h5py.File(path, "r") as file:
        group = file[split]
        offsets, lengths = group["token_offsets"][:], group["text_lengths"][:]
        for i in range(len(lengths)):
            tokens = group["token_states"][offsets[i] : offsets[i] + lengths[i]].astype(np.float64)  # [T, K, D]
            text = [tokens[:, k].mean(0) for k in range(tokens.shape[1])][-last_layers:]
            image = group["image_maps"][i].astype(np.float64).mean(axis=(1, 2))
            parts = ([*text] if modality in ("both", "text") else []) + ([image] if modality != "text" else [])
            rows.append(np.concatenate(parts))
    return np.stack(rows)


@pytest.mark.parametrize("modality", ["both", "text", "image"])
def test_pooled_features_equal_a_per_record_loop(tmp_path, modality):
    path = _cache(tmp_path)
    config = resolve_config(head="probe", modality=modality, text_layers_last=2)
    splits = open_splits(path, config)
    from spp_scl.runs.train.checkpoint import build_head
    from spp_scl.runs.train.probe import pooled_features
    from spp_scl.runs.train.trial_run import head_shapes

    model = build_head(config, head_shapes(splits["train"]))
    ours = pooled_features(model, splits["dev"], batch_size=7)  # batches pad to their longest text
    np.testing.assert_allclose(ours, naive_features(path, "dev", modality, last_layers=2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_classes", [3, 2])
def test_probe_equals_scikit_learn_at_the_c_chosen_on_dev(tmp_path, num_classes):
    path = _cache(tmp_path, num_classes)
    config = resolve_config(head="probe", probe_cs=(1e-3, 1e-2, 1e-1, 1.0))
    result = train(path, config, tmp_path / "run", log=lambda *_: None)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [line["probe_c"] for line in log] == list(config.probe_cs)
    best = max(line["dev_f1_weighted"] for line in log)
    chosen = next(line for line in log if line["dev_f1_weighted"] == best)  # the first (smallest C) on a tie
    assert result.selected_epoch == chosen["epoch"] and chosen["selected"]

    with h5py.File(path, "r") as file:
        train_labels, test_labels = file["train"]["labels"][:], file["test"]["labels"][:]
    train_x, test_x = naive_features(path, "train"), naive_features(path, "test")
    mean, scale = train_x.mean(0), train_x.std(0)
    reference = LogisticRegression(C=chosen["probe_c"], max_iter=5000, tol=1e-8).fit(
        (train_x - mean) / scale, train_labels
    )
    expected = reference.predict_proba((test_x - mean) / scale)
    rows = [r for r in csv.DictReader((tmp_path / "run" / "predictions.csv").open()) if r["split"] == "test"]
    ours = np.array([[float(r[f"p_class{c}"]) for c in range(num_classes)] for r in rows])
    np.testing.assert_allclose(ours, expected, atol=2e-3)  # two lbfgs runs to different tolerances
    assert (ours.argmax(1) == expected.argmax(1)).mean() >= 0.96
    assert result.metrics["test"]["accuracy"] == pytest.approx((ours.argmax(1) == test_labels).mean())


def test_a_probe_run_is_loaded_and_served_like_any_head(tmp_path):
    path = _cache(tmp_path)
    config = resolve_config(head="probe", modality="text", probe_cs=(0.01, 0.1))
    train(path, config, tmp_path / "run", log=lambda *_: None)
    model, loaded, shapes = load_head(tmp_path / "run")
    assert loaded == config and shapes["num_classes"] == 3
    _, _, probabilities = predict(model, open_splits(path, config)["test"], batch_size=4, device="cpu")
    rows = [r for r in csv.DictReader((tmp_path / "run" / "predictions.csv").open()) if r["split"] == "test"]
    saved = np.array([[float(r[f"p_class{c}"]) for c in range(3)] for r in rows])
    np.testing.assert_allclose(probabilities, saved, atol=1e-6)  # other batch size, same probabilities


def test_probe_strengths_must_be_positive():
    with pytest.raises(ValueError, match="probe_cs must hold positive numbers"):
        resolve_config(head="probe", probe_cs=(0.1, 0.0))
