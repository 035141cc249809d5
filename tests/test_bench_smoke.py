"""Each benchmark that can run on a small generated cache runs end to end and prints its figures: the docs quote
their output, so a benchmark broken by a change to the library must fail here, not when someone next measures.
(extract_throughput, predict_speed and view_cost need the real data and encoders; train_speed and gemm_calls build
MVSA-Single-sized inputs: they are run by hand.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spp_scl.heads.config import resolve_config
from spp_scl.runs.train.trainer import train
from tests.conftest import ROOT_DIR

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(
        {"train": 40, "dev": 12, "test": 12},
        layers=4,
        dim=16,
        map_shape=(8, 2, 2),
        mean_tokens=5,
    )


def bench(module: str, *args) -> str:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *map(str, args)],
        cwd=ROOT_DIR,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "module, args, expected",
    [
        ("head_speed", ["--epochs", "1"], "linear probe, both modalities"),
        ("grouped_drift", ["--epochs", "1", "--seeds", "42,43"], "group-1"),
        ("grouped_trials", ["--epochs", "1", "--kinds", "alone,group4"], "trial-epochs/h"),
        ("epoch_floor", ["--epochs", "1"], "seconds/floor per epoch"),
    ],
)
def test_benchmarks_on_a_small_cache(cache, module, args, expected):
    assert expected in bench(module, "--cache", cache, *args)


def test_cache_checksums_benchmark():
    assert "inspect --verify of the whole cache" in bench("cache_checksums", "--records", 20, "--repeats", 1)


def test_sweep_pruning_benchmark(cache, tmp_path):
    output = bench(
        "sweep_pruning", "--cache", cache, "--epochs", 3, "--patience", 2, "--jobs", 1, "--eval-seeds", 1,
        "--replays", 2, "--out", tmp_path / "out",
    )  # fmt: skip
    assert "Pruned choice within one standard deviation of the exhaustive choice" in output


def test_seed_runs_and_batch_fusion_benchmarks(cache, tmp_path):
    for seed in (42, 43):
        config = resolve_config("mvsa-single", epochs=1, batch_size=8, seed=seed, fusion="cmf-batch")
        train(cache, config, tmp_path / "runs" / f"batch-s{seed}", log=lambda *_: None)
    table = bench("seed_runs", tmp_path / "runs")
    assert "batch" in table
    assert "by label (oracle)" in bench("batch_fusion_dependence", tmp_path / "runs" / "batch-s42")
