"""Seed ensembles and the linear probe at predict time, from raw images and texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spp_scl.cli import main as spp_scl
from spp_scl.runs.predict.predictor import Predictor
from spp_scl.runs.predict.run_folder import RunFolderError
from tests.tiny_run import tiny_run


def _dev_pairs(tiny):
    records = json.loads((Path(tiny["data"]) / "dev.json").read_text())
    return [(r["id"], Path(tiny["data"]) / "images" / f"{r['id']}.jpg", r["text"]) for r in records]


def _probabilities(predictor, pairs) -> np.ndarray:
    results = list(predictor.predict(pairs))
    return np.array([[r.probabilities[name] for name in predictor.class_names] for r in results])


def test_an_ensemble_averages_its_members_probabilities(tiny, tmp_path_factory):
    members = [tiny_run(tiny, tmp_path_factory, seed=seed) for seed in (1, 2)] + [
        tiny_run(tiny, tmp_path_factory, head="probe", probe_cs=(0.1,))
    ]
    pairs = _dev_pairs(tiny)
    alone = [_probabilities(Predictor(member, batch_size=4), pairs) for member in members]
    assert not np.allclose(alone[0], alone[1])  # two seeds, two different heads
    together = _probabilities(Predictor(members, batch_size=4), pairs)
    np.testing.assert_allclose(together, np.mean(alone, axis=0), atol=1e-6)


def test_a_probe_run_is_served_from_raw_inputs_as_the_trainer_scored_it(tiny, tmp_path_factory):
    import csv

    run_dir = tiny_run(tiny, tmp_path_factory, head="probe", modality="text", probe_cs=(0.1, 1.0))
    saved = [row for row in csv.DictReader((run_dir / "predictions.csv").open()) if row["split"] == "dev"]
    predictor = Predictor(run_dir, batch_size=3)
    assert predictor.image is None  # a text-only probe loads no image encoder
    ours = _probabilities(predictor, _dev_pairs(tiny))
    expected = np.array([[float(row[f"p_{name}"]) for name in predictor.class_names] for row in saved])
    np.testing.assert_allclose(ours, expected, atol=2e-3)  # features rounded to float16 as in the cache


def test_ensemble_members_must_read_the_same_features(tiny, tmp_path_factory, capsys):
    first = tiny_run(tiny, tmp_path_factory, seed=1)
    other_layers = tiny_run(tiny, tmp_path_factory, text_layers_last=1)
    with pytest.raises(RunFolderError, match="cannot join an ensemble"):
        Predictor([first, other_layers])
    pair = _dev_pairs(tiny)[0]
    code = spp_scl(["predict", str(first), str(other_layers), "--image", str(pair[1]), "--text", pair[2]])
    assert code == 3 and "its text layers" in capsys.readouterr().err
