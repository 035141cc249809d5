"""Diagnostics: the modality distances against a hand-computed example, the untrained head is the trainer's
initialisation, and the report with its pictures builds from a small run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spp_scl.cli import main as spp_scl
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.predict.run_folder import RunFolder
from spp_scl.runs.report.diagnostics import modality_distances
from spp_scl.runs.train.trainer import train
from tests.tiny_run import tiny_cache, tiny_run


def test_distances_against_a_hand_computed_example():
    labels = np.array([0, 0, 1])
    v = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    t = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    raw = modality_distances(t, v, labels, ["pos", "neg"])["raw"]
    # IID: class pos has one image pair, |(0,0)-(3,4)| = 5; class neg has a single image: no pair.
    assert raw["IID"]["per_class"] == {"pos": 5.0, "neg": None}
    assert raw["IID"]["overall"] == 5.0 and raw["IID"]["pairs"] == 1
    # TTD: |(0,0)-(0,1)| = 1.
    assert raw["TTD"]["per_class"]["pos"] == 1.0
    # ITD, pos: v0-t0 = 0, v0-t1 = 1, v1-t0 = 5, v1-t1 = |(3,3)| = sqrt(18); neg: v2-t2 = |(4,4)| = sqrt(32).
    assert raw["ITD"]["per_class"]["pos"] == pytest.approx((0 + 1 + 5 + math.sqrt(18)) / 4)
    assert raw["ITD"]["per_class"]["neg"] == pytest.approx(math.sqrt(32))
    assert raw["ITD"]["overall"] == pytest.approx((0 + 1 + 5 + math.sqrt(18) + math.sqrt(32)) / 5)
    assert raw["ITD"]["pairs"] == 5
    # The different-label reference: images 0-2 (sqrt 2) and 1-2 (sqrt 13); v0-t2, v1-t2, v2-t0, v2-t1.
    assert raw["IID"]["different_label"] == pytest.approx((math.sqrt(2) + math.sqrt(13)) / 2)
    assert raw["ITD"]["different_label"] == pytest.approx((math.sqrt(50) + math.sqrt(5) + math.sqrt(2) + 1) / 4)
    unit = modality_distances(t * 7.0, v * 7.0, labels, ["pos", "neg"])["normalised"]
    # Normalised distances ignore the scale: image 0 is the zero vector (it stays zero), image 1 becomes (0.6, 0.8).
    assert unit["IID"]["per_class"]["pos"] == pytest.approx(1.0)
    assert unit["ITD"]["per_class"]["neg"] == pytest.approx(0.0, abs=1e-12)  # (1,1) and (5,5) point the same way


def test_untrained_head_is_the_trainers_initialisation(tiny, tmp_path_factory, tmp_path):
    # With a learning rate of 0 (and so no weight decay either) AdamW leaves every weight where the trainer put it.
    run_dir = tmp_path / "still"
    train(
        tiny_cache(tiny, tmp_path_factory),
        resolve_config("mvsa-single", epochs=1, batch_size=8, lr=0.0),
        run_dir,
        log=lambda *_: None,
    )
    run = RunFolder(run_dir)
    trained, untrained = run.trained_head(), run.untrained_head()
    buffers = {name for name, _ in trained.named_buffers()}  # BatchNorm statistics move even at lr 0
    for name, value in untrained.state_dict().items():
        if name not in buffers:
            assert torch.equal(value, trained.state_dict()[name]), name


def test_report_builds_from_a_small_run(tiny, tmp_path_factory, capsys):
    run_dir = tiny_run(tiny, tmp_path_factory)
    assert spp_scl(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    assert (
        "Collapse check (predictions covering one class, or macro F1 at or below the majority-class level): dev"
        in report
    )
    for heading in (
        "# Run report",
        "## Metrics",
        "## Training (log.jsonl)",
        "## Modality distances",
        "## Pictures",
        "## Config",
    ):
        assert heading in report
    diagnostics = json.loads((run_dir / "diagnostics" / "diagnostics.json").read_text())
    assert diagnostics["splits"] == ["dev", "test"]
    for split in ("dev", "test"):
        for state in ("untrained", "trained"):
            for space in ("raw", "normalised"):
                summary = diagnostics["distances"][split][state][space]
                assert set(summary) == {"IID", "TTD", "ITD"} and all(summary[k]["overall"] > 0 for k in summary)
    assert set(diagnostics["pictures"]) == {"distances_raw", "distances_normalised", "tsne", "confusion", "curves"}
    for picture in diagnostics["pictures"].values():
        assert (run_dir / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({picture})" in report
    assert spp_scl(["report", str(run_dir / "nothing-here")]) == 3
    assert "not a finished run folder" in capsys.readouterr().err
