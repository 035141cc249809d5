"""On a GPU: training, prediction and extraction give what the CPU gives, and bfloat16 trains. Marked `gpu`, skipped
without one; bench/device_check.py runs them on a lent GPU machine (`pytest -m gpu`)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.trainer import train
from tests.conftest import ROOT_DIR, cache_contents, tiny_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")]


def log_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    return write_synthetic_cache(
        tmp_path_factory.mktemp("gpu") / "cache.h5", {"train": 96, "dev": 32}, layers=2, dim=32,
        map_shape=(16, 3, 3), mean_tokens=8, signal=0.8, seed=1,
    )  # fmt: skip


def test_an_epoch_on_the_gpu_gives_the_cpus_losses(generated, tmp_path):
    # Dropout draws its masks from the device's own generator (CUDA's differs from the CPU's), so it is off here.
    config = resolve_config("mvsa-single", epochs=2, batch_size=16, lr=1e-3, dropout=0.0)
    train(generated, config, tmp_path / "cpu", cpu=True, log=lambda *_: None)
    train(generated, config, tmp_path / "gpu", log=lambda *_: None)
    assert json.loads((tmp_path / "gpu" / "config.json").read_text())["device"].startswith("cuda")
    for on_cpu, on_gpu in zip(log_lines(tmp_path / "cpu"), log_lines(tmp_path / "gpu")):
        # The same batches (their order is drawn on the CPU) and two-step decisions; kernels round otherwise.
        assert on_gpu["loss_step_one"] == pytest.approx(on_cpu["loss_step_one"], rel=1e-3)
        assert on_gpu["dev_accuracy"] == pytest.approx(on_cpu["dev_accuracy"], abs=1 / 32)


def test_bfloat16_trains_to_finite_losses_on_the_gpu(generated, tmp_path):
    config = resolve_config("mvsa-single", epochs=1, batch_size=16, precision="bfloat16")
    train(generated, config, tmp_path / "run", log=lambda *_: None)
    assert all(np.isfinite(line["loss_step_one"]) for line in log_lines(tmp_path / "run"))


def test_a_run_trained_on_the_gpu_predicts_the_same_on_the_cpu(tiny, tmp_path):
    from spp_scl.extract.pipeline import run as extract
    from spp_scl.runs.predict.predictor import Predictor

    cache = tmp_path / "cache.h5"
    extract(tiny_config(tiny, cache), log=lambda *_: None)
    train(cache, resolve_config("mvsa-single", epochs=2, batch_size=8), tmp_path / "run", log=lambda *_: None)
    records = json.loads((Path(tiny["data"]) / "dev.json").read_text())
    pairs = [(r["id"], Path(tiny["data"]) / "images" / f"{r['id']}.jpg", r["text"]) for r in records]
    with (tmp_path / "run" / "predictions.csv").open() as handle:
        saved = {row["id"]: row for row in csv.DictReader(handle) if row["split"] == "dev"}
    predictor = Predictor(tmp_path / "run", device="cpu")
    for result in predictor.predict(pairs):
        stored = [float(saved[result.id][f"p_{name}"]) for name in predictor.class_names]
        np.testing.assert_allclose([result.probabilities[n] for n in predictor.class_names], stored, atol=1e-3)


def test_extraction_on_the_gpu_gives_the_cpus_features(tiny, tmp_path):
    from spp_scl.extract.pipeline import run as extract

    extract(tiny_config(tiny, tmp_path / "gpu.h5"), log=lambda *_: None)
    script = (
        "from spp_scl.extract.pipeline import run; from tests.conftest import tiny_config; import json, sys; "
        "run(tiny_config(json.loads(sys.argv[1]), sys.argv[2]), log=lambda *_: None)"
    )
    settings = json.dumps({key: str(value) for key, value in tiny.items()})
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", script, settings, str(tmp_path / "cpu.h5")], cwd=ROOT_DIR, env=environment,
                   check=True)  # fmt: skip
    on_gpu, on_cpu = cache_contents(tmp_path / "gpu.h5"), cache_contents(tmp_path / "cpu.h5")
    for key in ("train/image_maps", "train/first_token", "train/token_states"):
        np.testing.assert_allclose(on_gpu[key].astype(np.float32), on_cpu[key].astype(np.float32), atol=2e-2)
    assert np.array_equal(on_gpu["train/ids"], on_cpu["train/ids"])
