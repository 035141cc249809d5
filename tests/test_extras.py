"""`pip install spp-scl` without extras trains, evaluates and reports from an existing cache; a verb that needs an
extra says which one in one line, with its own exit status. The extras' packages are hidden from a subprocess by
an import hook, as if they were not installed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spp_scl.core.errors import EXIT_MISSING_EXTRA
from spp_scl.core.extras import EXTRAS

pytestmark = pytest.mark.slow

HIDE = """
import importlib.abc, sys
HIDDEN = {hidden!r}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Hide())
from spp_scl.cli import main
code = main({argv!r})
import sys as s
s.stdout.flush()
print("LOADED", sorted(m for m in s.modules if m.split(".")[0] in HIDDEN))
raise SystemExit(code)
"""


def run_without_extras(argv, cwd):
    code = HIDE.format(hidden=sorted(EXTRAS), argv=[str(a) for a in argv])
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(
        {"train": 32, "dev": 12, "test": 12},
        layers=2,
        dim=16,
        map_shape=(8, 2, 2),
        mean_tokens=5,
    )


@pytest.mark.parametrize("head", ["spp-scl", "clmlf", "probe"])
def test_training_from_a_cache_needs_no_extra(cache, tmp_path, head):
    run_dir = tmp_path / "run"
    argv = ["train", "-q", "--cache", cache, "--head", head, "--epochs", "2", "--batch-size", "8", "--out", run_dir]
    result = run_without_extras(argv, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"dev", "test"} <= metrics.keys()
    report = run_without_extras(["report", "-q", run_dir], tmp_path)
    assert report.returncode == 0, report.stderr


def test_a_sweep_without_optuna_names_the_extra(cache, tmp_path):
    result = run_without_extras(
        ["sweep", "--cache", cache, "--axis", "tau=0.05,0.1", "--out", tmp_path / "s"], tmp_path
    )
    assert result.returncode == EXIT_MISSING_EXTRA
    assert result.stderr.strip().splitlines()[-1] == (
        "error: sweeps need the Python package 'optuna', which is not installed: pip install 'spp-scl[sweep]'"
    )


def test_extraction_without_transformers_names_the_extra(tmp_path):
    result = run_without_extras(["extract", "--data", tmp_path, "--out", tmp_path / "c.h5"], tmp_path)
    assert result.returncode == EXIT_MISSING_EXTRA
    assert "pip install 'spp-scl[extract]'" in result.stderr.strip().splitlines()[-1]
