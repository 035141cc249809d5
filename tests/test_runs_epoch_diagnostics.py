"""log.jsonl's per-epoch diagnostics: running train accuracy, the two-step rule's quantities, HA layer weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.checkpoint import load_head
from spp_scl.runs.train.trainer import open_splits, train


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(
        {"train": 64, "dev": 24},
        layers=3,
        dim=16,
        map_shape=(8, 2, 2),
        mean_tokens=5,
        signal=0.5,
        seed=3,
    )


def test_two_step_runs_log_the_rule_and_the_layer_weights(cache, tmp_path):
    config = resolve_config("mvsa-single", epochs=3, batch_size=16, lr=3e-3, theta=0.9)
    train(cache, config, tmp_path, log=lambda *_: None)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    for line in lines:
        assert 0.0 <= line["train_accuracy"] <= 1.0
        assert line["rule_c_over_P"] == pytest.approx(line["rule_c"] / line["rule_P"])
        assert 0.5 <= line["rule_m"] <= 1.0 and 0.0 <= line["rule_saturated"] <= 1.0
        # P: ordered same-label pairs of a batch of 16 with 3 classes lies between 16 * 16 / 3 and 16 * 16.
        assert 16 * 16 / 3 <= line["rule_P"] <= 16 * 16
        assert len(line["ha_weight_mean"]) == 3 and len(line["ha_weight_std"]) == 3
    # The selected epoch's layer weights are those of the saved head over dev, computed here directly.
    selected = [line for line in lines if line["selected"]][-1]
    model, _, _ = load_head(tmp_path)
    split = open_splits(cache, config)["dev"]
    batch = split.batch(list(range(len(split))))
    with torch.no_grad():
        weights = model(batch.image_maps, batch.first_token, batch.token_states, batch.token_mask)["text_layer_weights"]
    np.testing.assert_allclose(selected["ha_weight_mean"], weights.mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(selected["ha_weight_std"], weights.std(0, unbiased=False).numpy(), atol=1e-5)


def test_one_step_runs_have_no_rule_to_log(cache, tmp_path):
    train(cache, resolve_config("mvsa-single", epochs=2, batch_size=16, two_step=False), tmp_path, log=lambda *_: None)
    line = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert "rule_c" not in line and "train_accuracy" in line


def test_single_backward_heads_report_their_forwards_correct_predictions():
    """The compared heads' running train accuracy counts what their forward predicted before the step."""
    from spp_scl.heads.single_backward_step import single_backward_step

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 3)

        def forward(self, image_maps, first_token, token_states, token_mask):
            return {"logits": self.layer(first_token)}

    torch.manual_seed(0)
    model = Linear()
    batch = {"first_token": torch.randn(32, 4), "labels": torch.randint(0, 3, (32,))}
    with torch.no_grad():
        expected = float((model.layer(batch["first_token"]).argmax(1) == batch["labels"]).sum())
    optimizer = torch.optim.SGD(model.parameters(), lr=10.0)
    report = single_backward_step(
        model,
        batch,
        optimizer,
        lambda outputs, labels: {"ce": (1.0, torch.nn.functional.cross_entropy(outputs["logits"], labels))},
    )
    assert report["train_correct"] == expected


@pytest.mark.parametrize("head", ["clmlf", "mdse"])
def test_compared_heads_log_a_train_accuracy(cache, tmp_path, head):
    config = resolve_config("mvsa-single", epochs=2, batch_size=16, head=head, model_dim=16, feedforward_dim=32)
    train(cache, config, tmp_path, log=lambda *_: None)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all(0.0 < line["train_accuracy"] <= 1.0 for line in lines)
