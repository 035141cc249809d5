"""The golden check: what `train`, `tables`, `compare` and `sweep` write on a small generated cache, one seed,
reduced to the bytes a restructuring must not change (log.jsonl without its wall times, metrics.json,
predictions.csv of every run folder). `python -m tests.golden_runs` records them into tests/golden/;
tests/test_golden_runs.py reruns the commands and compares.

Floating-point sums depend on the CPU's kernels (AVX2 against AVX-512), so the recorded bytes hold exactly on the
kind of CPU that recorded them (its model name is stored beside them); elsewhere the test compares every number to
a relative 1e-4 and every label exactly."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
KEPT_FILES = ("log.jsonl", "metrics.json", "predictions.csv")
TIMING_KEYS = ("seconds",)

# One seed, three epochs; tables and compare in groups of two so that the grouped path is covered too.
COMMON = ["--set", "epochs=3", "--set", "batch_size=16", "--set", "lr=0.002"]
COMMANDS = {
    "train": ["train", "--cache", "{cache}", "--preset", "mvsa-single", "--epochs", "3", "--batch-size", "16"]
    + ["--lr", "0.002", "--seed", "1", "--out", "{out}"],
    "tables": ["tables", "--cache", "mvsa-single={cache}", "--tables", "4", "--seeds", "1", "--group-size", "2"]
    + COMMON
    + ["--out", "{out}"],
    "compare": ["compare", "--cache", "mvsa-single={cache}", "--methods", "spp-scl,clmlf,mdse,probe", "--seeds", "1"]
    + ["--group-size", "1", *COMMON, "--out", "{out}"],
    "sweep": ["sweep", "--cache", "{cache}", "--preset", "mvsa-single", "--axis", "tau=0.05,0.1", "--seeds", "1"]
    + ["--group-size", "2", *COMMON, "--out", "{out}"],
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_cache(path: Path) -> Path:
    try:
        from spp_scl.cache.synthetic import write_synthetic_cache
    except ImportError:  # before the restructuring
        from spp_scl.cache.synthetic import write_synthetic_cache

    return write_synthetic_cache(
        path,
        {"train": 48, "dev": 16, "test": 16},
        layers=4,
        dim=32,
        map_shape=(16, 3, 3),
        mean_tokens=6,
        signal=0.08,
        seed=5,
    )


def run_commands(cache: Path, out: Path, names=tuple(COMMANDS)) -> None:
    for name in names:
        args = [part.format(cache=cache, out=out / name) for part in COMMANDS[name]]
        env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
        subprocess.run(
            [sys.executable, "-m", "spp_scl", args[0], "-q", *args[1:]],
            check=True,
            env=env,
            cwd=out,
            stdout=subprocess.DEVNULL,
        )


def collect(out: Path) -> dict[str, str]:
    """{relative path: content} of the kept files of every run folder under `out`, wall times dropped."""
    files = {}
    for path in sorted(out.rglob("*")):
        if path.name not in KEPT_FILES:
            continue
        text = path.read_text()
        if path.name == "log.jsonl":
            lines = [json.loads(line) for line in text.splitlines()]
            text = "".join(json.dumps({k: v for k, v in line.items() if k not in TIMING_KEYS}) + "\n" for line in lines)
        files[str(path.relative_to(out))] = text
    return files


def record() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        cache = make_cache(folder / "cache.h5")
        run_commands(cache, folder)
        files = collect(folder)
    GOLDEN_DIR.mkdir(exist_ok=True)
    (GOLDEN_DIR / "runs.json").write_text(json.dumps({"cpu": cpu_model(), "files": files}, indent=1, sort_keys=True))
    print(f"recorded {len(files)} files into {GOLDEN_DIR / 'runs.json'}")


if __name__ == "__main__":
    record()
