"""A sweep with parallel trials killed with kill -9 takes its worker processes with it: none is left running
(each holds a copy of the cache, hundreds of MB on real data). Both ways trials run side by side: the pool of
runs/trials/executor.py (tables, comparison) and the worker processes of `spp-scl sweep --jobs 2`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spp_scl.cache.synthetic import write_synthetic_cache
from tests.conftest import ROOT_DIR

pytestmark = pytest.mark.slow  # end to end: processes, extractions or many epochs

TRIALS = """
import sys
from pathlib import Path
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.trials.executor import Trial, run_trials

out = Path(sys.argv[2])
base = resolve_config("mvsa-single", epochs=500, batch_size=16)
trials = [Trial("long", {}, seed) for seed in range(4)]
run_trials(sys.argv[1], base, trials, out / "results.jsonl", out / "trials", jobs=2, progress=False)
"""


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for init to reap it has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _command(launcher: str, cache: Path, out: Path) -> list[str]:
    if launcher == "trials pool":
        return [sys.executable, "-c", TRIALS, str(cache), str(out)]
    return [
        *(sys.executable, "-m", "spp_scl", "sweep", "--cache", str(cache), "--preset", "mvsa-single"),
        *("--set", "epochs=500", "--set", "batch_size=16", "--seeds", "4", "--jobs", "2", "--out", str(out)),
    ]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from Linux's /proc")
@pytest.mark.parametrize("launcher", ["trials pool", "spp-scl sweep"])
def test_killing_a_parallel_sweep_ends_its_workers(tmp_path, launcher):
    cache = write_synthetic_cache(
        tmp_path / "cache.h5", {"train": 64, "dev": 16}, layers=2, dim=16, map_shape=(8, 2, 2), mean_tokens=6
    )
    out = tmp_path / "sweep"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT_DIR)}
    sweep = subprocess.Popen(_command(launcher, cache, out), env=env, cwd=ROOT_DIR)
    workers = []
    try:
        # Both workers are training once both trials have written their run folder's config.json.
        started = _wait_until(lambda: sweep.poll() is not None or len(list(out.glob("trials/*/config.json"))) >= 2, 240)
        assert started and sweep.poll() is None, "the sweep did not start two trials"
        workers = _children(sweep.pid)
        assert len(workers) >= 2
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=30)
        gone = _wait_until(lambda: not any(_alive(pid) for pid in workers), 60)
        assert gone, f"workers still running after their sweep was killed: {[p for p in workers if _alive(p)]}"
    finally:
        if sweep.poll() is None:
            sweep.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
