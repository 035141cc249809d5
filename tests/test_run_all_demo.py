"""`bash run_all.sh` with no data configured runs the whole demo: generated data, extraction, sweep, tables."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import ROOT_DIR

pytestmark = pytest.mark.slow  # end to end: processes, extractions or many epochs


def test_run_all_demo_end_to_end_in_reduced_size(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("MVSA_SINGLE", "MVSA_MULTIPLE", "HFM")}
    env.update(
        DEMO_DIR=str(tmp_path / "demo"), DEMO_SIZES="48,24,24", DEMO_EPOCHS="2", DEMO_SEEDS="1", OMP_NUM_THREADS="1"
    )
    result = subprocess.run(
        ["bash", str(ROOT_DIR / "run_all.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "DEMO (no data configured" in result.stdout and "DEMO done" in result.stdout
    demo = tmp_path / "demo"
    assert (demo / "cache" / "demo.h5").is_file()
    assert len((demo / "sweep" / "results.jsonl").read_text().splitlines()) == 8
    for number in (3, 4, 5, 6, 7):
        assert "| SPP-SCL (two-step" in (demo / "tables" / f"table{number}.md").read_text()
    assert (demo / "sweep" / "sweep_tau_theta.png").is_file()
    comparison = (demo / "compare" / "comparison.md").read_text()
    assert "CLMLF" in comparison and "MDSE" in comparison
    # Every table and summary of the demo says what its data are, in its title and its JSON.
    stamp = "DEMO: generated data, not MVSA"
    assert comparison.startswith(f"# [{stamp}]") and (demo / "sweep" / "summary.md").read_text().startswith(
        f"# [{stamp}]"
    )
    for number in (3, 4, 5, 6, 7):
        assert (demo / "tables" / f"table{number}.md").read_text().startswith(f"## [{stamp}]")
    for record in ("compare/comparison.json", "sweep/summary.json", "tables/tables.json"):
        assert json.loads((demo / record).read_text())["data_note"] == stamp
    assert "Best point by dev" in result.stdout
    # A second run finds every step done and redoes none of them.
    again = subprocess.run(["bash", str(ROOT_DIR / "run_all.sh")], env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0
    assert "already in" in (demo / "sweep.log").read_text() and "is up to date" in again.stdout
