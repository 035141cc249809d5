"""A small trained run on the tiny generated data and encoders (tests/conftest.py), for the predict and the
diagnostics tests. Built once per test session: the cache and each run are kept under the session's base
temporary folder and reused by every test module that asks for them."""

from __future__ import annotations

from pathlib import Path

from spp_scl.extract.pipeline import run as extract
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.trainer import train
from tests.conftest import tiny_config


def tiny_cache(tiny, tmp_path_factory) -> Path:
    path = tmp_path_factory.getbasetemp() / "tiny-run-cache" / "cache.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        extract(tiny_config(tiny, path), log=lambda *_: None)
    return path


def tiny_run(tiny, tmp_path_factory, **overrides) -> Path:
    """A run folder trained for a few epochs on the tiny cache; `overrides` change the config (fusion, ...)."""
    name = "-".join(f"{key}-{value}" for key, value in sorted(overrides.items())) or "default"
    run_dir = tmp_path_factory.getbasetemp() / f"tiny-run-{name}"
    if not (run_dir / "predictions.csv").exists():
        config = resolve_config("mvsa-single", **{"epochs": 3, "batch_size": 8, "lr": 2e-3, **overrides})
        train(tiny_cache(tiny, tmp_path_factory), config, run_dir, log=lambda *_: None)
    return run_dir
