"""The weight average (config.weight_average): the head a run selects, saves and predicts with is the exponential
moving average of the trained weights and BatchNorm statistics over the iterations, computed here by a plain loop
over the weights the trainer produced."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import spp_scl.runs.train.trainer as trainer
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.checkpoint import load_head
from spp_scl.runs.train.trainer import open_splits, train
from spp_scl.runs.train.trial_run import predict


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(
        {"train": 96, "dev": 40},
        layers=2,
        dim=16,
        map_shape=(12, 3, 3),
        mean_tokens=6,
        signal=0.6,
        seed=4,
    )


def _config(**overrides):
    return resolve_config("mvsa-single", **{"epochs": 1, "batch_size": 32, "lr": 3e-3, **overrides})


def test_the_saved_head_is_the_moving_average_of_the_trained_weights(cache, tmp_path, monkeypatch):
    trained_states = []  # the trained weights after every iteration, as the trainer hands them to the average
    original = trainer.update_average

    def recording(average, model):
        trained_states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        original(average, model)

    monkeypatch.setattr(trainer, "update_average", recording)
    decay = 0.6
    train(cache, _config(weight_average=decay), tmp_path, log=lambda *_: None)
    assert len(trained_states) == 3  # 96 records in batches of 32

    saved, _, _ = load_head(tmp_path)
    for name, value in saved.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        expected = trained_states[0][name].float()
        for state in trained_states[1:]:
            expected = decay * expected + (1 - decay) * state[name].float()
        torch.testing.assert_close(value.float(), expected, rtol=1e-5, atol=1e-6, msg=name)
    last = trained_states[-1]
    moved = [name for name, _ in saved.named_parameters() if not torch.allclose(saved.state_dict()[name], last[name])]
    assert moved  # the saved head is not the last trained weights


def test_the_average_is_what_selects_and_predicts(cache, tmp_path):
    result = train(cache, _config(weight_average=0.9, epochs=3), tmp_path, log=lambda *_: None)
    model, config, meta = load_head(tmp_path)
    ids, labels, probabilities = predict(model, open_splits(cache, config)["dev"], 64, "cpu")
    with (tmp_path / "predictions.csv").open() as handle:
        saved = [row for row in csv.DictReader(handle) if row["split"] == "dev"]
    stored = np.array([[float(row[f"p_{name}"]) for name in meta["class_names"]] for row in saved])
    np.testing.assert_allclose(probabilities, stored, atol=2e-6)
    assert result.metrics["dev"]["accuracy"] == pytest.approx(float((probabilities.argmax(1) == labels).mean()))


def test_off_by_default_and_bad_decays_are_refused(cache, tmp_path):
    plain = train(cache, _config(epochs=2), tmp_path / "a", log=lambda *_: None)
    assert resolve_config("mvsa-single").weight_average == 0.0
    off = train(cache, _config(epochs=2, weight_average=0.0), tmp_path / "b", log=lambda *_: None)
    assert plain.metrics == off.metrics
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="weight_average"):
            _config(weight_average=bad)
