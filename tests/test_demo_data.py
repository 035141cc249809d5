"""The built-in demo's generated set does what run_all.sh promises: some labels show only in the text, some
only in the image, some only in both, so the fused model measurably beats either modality alone."""

from __future__ import annotations

import pytest

from spp_scl.extract.demo import make_demo_dataset
from spp_scl.extract.pipeline import run
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.trainer import open_splits, train
from tests.conftest import tiny_config

pytestmark = pytest.mark.slow  # end to end: processes, extractions or many epochs


def test_fusion_beats_each_modality_on_the_demo_set(tiny, tmp_path):
    data = make_demo_dataset(tmp_path / "data", {"train": 600, "dev": 150}, seed=0)
    cache = tmp_path / "demo.h5"
    run(
        tiny_config(tiny, cache, data=str(data), shard_size=256, text_batch_size=64, image_batch_size=64),
        log=lambda *_: None,
    )
    # The demo's own training settings (run_all.sh): 8 epochs, lr 0.005, batch 32.
    base = resolve_config("mvsa-single", epochs=8, lr=0.005, batch_size=32)
    splits = open_splits(cache, base)
    accuracy = {}
    for modality in ("both", "text", "image"):
        result = train(cache, base.replace(modality=modality), tmp_path / modality, log=lambda *_: None, splits=splits)
        accuracy[modality] = result.metrics["dev"]["accuracy"]
    # A modality alone can read at most 1/3 + 1/3 * 1/3 + 1/3 * 1/2 = 0.61 of the records.
    assert accuracy["text"] < 0.67 and accuracy["image"] < 0.67, accuracy
    assert accuracy["both"] > max(accuracy["text"], accuracy["image"]) + 0.08, accuracy
