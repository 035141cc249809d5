"""The run folders that train, tables (grouped trials), compare and a sweep write on a small generated cache are
the recorded ones (tests/golden_runs.py): a restructuring of the training code changes no weight, log line,
metric or prediction. Exact on the kind of CPU that recorded them, numbers to a relative 1e-4 elsewhere."""

from __future__ import annotations

import json
import math

import pytest

from tests.golden_runs import GOLDEN_DIR, collect, cpu_model, make_cache, run_commands

pytestmark = pytest.mark.slow


def close(recorded: str, now: str) -> bool:
    """Every token equal, numbers to a relative 1e-4 (labels, names and structure exactly)."""
    a, b = recorded.replace(",", " ").split(), now.replace(",", " ").split()
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        try:
            fx, fy = float(x.strip('"{}[]:')), float(y.strip('"{}[]:'))
        except ValueError:
            return False
        if not math.isclose(fx, fy, rel_tol=1e-4, abs_tol=1e-6):
            return False
    return True


def test_run_folders_match_the_recorded_ones(tmp_path):
    golden = json.loads((GOLDEN_DIR / "runs.json").read_text())
    cache = make_cache(tmp_path / "cache.h5")
    run_commands(cache, tmp_path)
    files = collect(tmp_path)
    assert sorted(files) == sorted(golden["files"])
    exact = golden["cpu"] == cpu_model()
    for name, recorded in golden["files"].items():
        if exact:
            assert files[name] == recorded, f"{name} differs from the recorded run"
        else:
            assert close(recorded, files[name]), f"{name} differs from the recorded run beyond 1e-4"
