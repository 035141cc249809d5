"""The prepared device check: every figure a GPU machine should give, in one JSON file, in one command.

    bash bench/device_check.sh OUT_FOLDER                      # on a GPU machine: about 8 minutes
    python -m bench.device_check --tiny --out check.json       # seconds, on any machine (its test)

Parts, each written to the JSON as soon as it is done (a run stopped at its time limit keeps what it measured):
1. environment: torch, the device, its memory, whether bfloat16 is fast there;
2. heads: each compared head (runs/protocols/comparison.py) trains --epochs epochs on a generated cache of the
   paper's shapes (MVSA-Single-sized: 3,611 train / 450 dev; BERT-base's 4 x 768 token states, ResNet-50's
   2048 x 7 x 7 maps), in float32 and in bfloat16 where it is fast (the trainer refuses it elsewhere, and the JSON
   says so); seconds of the first epoch and the mean of the later ones, and the peak GPU memory;
3. recurrence: bench/text_recurrence.py at MVSA-Single's shapes: the text branch's BiLSTM as the head runs it (per
   step kernels on the real tokens) against nn.LSTM on the zero-padded batch (cuDNN), training and no-grad
   milliseconds per batch and their difference (the same vectors within float32 rounding);
4. compiled: bench/compiled_step.py on the same cache: the compared heads' training iteration eager against the forward
   through torch.compile (the text branch's data-dependent parts eager between graphs), with the compile time;
5. sweep: bench/grouped_trials.py's trials alone, the 27-point tau / theta / lambda grid at --sweep-epochs epochs,
   one after the other: wall time and trial-epochs per hour;
6. extraction: bench/extract_throughput.py with BERT-base and ResNet-50 architectures (random weights) on a
   generated split folder: the pipeline's records per second against the encoders' bare forward;
7. tests: the tests marked `gpu` (pytest -m gpu), which skip without a GPU;
8. recurrence_compiled (last, so a time limit cuts it first): part 3 again with the compile-friendly recurrence
   through torch.compile as a third path, its compile time included (minutes on a CPU: GPU runs only unless tiny).
--tiny shrinks every size so that the whole check runs in seconds on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PAPER_SHAPES = {"layers": 4, "dim": 768, "map_shape": (2048, 7, 7), "sizes": {"train": 3611, "dev": 450}}
TINY_SHAPES = {"layers": 2, "dim": 16, "map_shape": (8, 2, 2), "sizes": {"train": 48, "dev": 16}}


def environment() -> dict:
    from spp_scl.heads.precision import fast_bfloat16

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    found = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device.type,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "fast_bfloat16": fast_bfloat16(device),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(0)
        found.update(
            gpu=properties.name,
            gpu_memory_gib=round(properties.total_memory / 2**30, 1),
            multiprocessors=properties.multi_processor_count,
            cuda=torch.version.cuda,
        )
    return found


def heads(cache: Path, epochs: int, work: Path) -> list[dict]:
    """Seconds per epoch of every compared head, float32 and bfloat16, on `cache`."""
    from spp_scl.core.errors import InputError
    from spp_scl.heads.presets import resolve_config
    from spp_scl.runs.protocols.comparison import select_methods
    from spp_scl.runs.train.trainer import open_splits, train

    base = resolve_config("mvsa-single", epochs=epochs)
    splits = open_splits(cache, base)
    rows = []
    for method in select_methods(None):
        for precision in ("float32", "bfloat16"):
            row = {"method": method.key, "precision": precision}
            run_dir = work / f"{method.key}-{precision}"
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            try:
                train(cache, base.replace(**method.overrides, precision=precision), run_dir, splits=splits,
                      log=lambda *_: None)  # fmt: skip
            except (InputError, ValueError) as refused:  # bfloat16 where it is slow: the trainer's own words
                rows.append({**row, "refused": str(refused).splitlines()[0]})
                continue
            seconds = [json.loads(line)["seconds"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
            later = seconds[1:] or seconds
            row.update(first_epoch_seconds=round(seconds[0], 3), later_epoch_seconds=round(sum(later) / len(later), 3))
            if torch.cuda.is_available():
                row["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def recurrence(tiny: bool, compiled: bool = False) -> dict:
    from bench.text_recurrence import measure

    if tiny:
        return measure(batch=4, tokens=12, longest=5, dim=16, hidden=8, repeats=2, compiled=compiled)
    return measure(compiled=compiled)


def compiled(cache: Path, tiny: bool, work: Path) -> list[dict]:
    figures = work / "compiled.json"
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.compiled_step", "--cache", str(cache), "--json", str(figures)]
    # The three compared heads (text and image only are parts of SPP-SCL's): each compiles for a minute or more.
    command += (
        ["--methods", "spp-scl", "--iterations", "2", "--warm-up", "2"] if tiny else ["--methods", "spp-scl,clmlf,mdse"]
    )
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(figures.read_text())["rows"]


def sweep(cache: Path, trials: int, epochs: int, work: Path) -> dict:
    figures = work / "sweep.json"
    command = [sys.executable, "-m", "bench.grouped_trials", "--cache", str(cache), "--kinds", "alone"]
    command += ["--alone-trials", str(trials), "--epochs", str(epochs), "--work", str(work), "--json", str(figures)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(figures.read_text())["rows"][0]


def extraction(records: int, tiny: bool, work: Path) -> dict:
    from spp_scl.extract.demo import make_demo_dataset, make_tiny_image_encoder, make_tiny_text_encoder

    data = make_demo_dataset(work / "data", {"train": records}, seed=0)
    figures = work / "extraction.json"
    command = [sys.executable, "-m", "bench.extract_throughput", "--data", str(data), "--records", str(records)]
    command += ["--json", str(figures)]
    if tiny:  # the demo's tiny encoders instead of BERT-base and ResNet-50
        command += ["--text-encoder", str(make_tiny_text_encoder(work / "text"))]
        command += ["--image-encoder", str(make_tiny_image_encoder(work / "image"))]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(figures.read_text())


def gpu_tests() -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
        capture_output=True,
        text=True,
    )
    lines = done.stdout.strip().splitlines()
    return {"exit_status": done.returncode, "summary": lines[-1] if lines else done.stderr.strip()[-500:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSON file of every figure")
    parser.add_argument("--tiny", action="store_true", help="every size tiny: a smoke run in seconds")
    parser.add_argument("--epochs", type=int, help="epochs per head (default 3; tiny 2)")
    parser.add_argument("--sweep-trials", type=int, help="trials of the sweep (default 27; tiny 2)")
    parser.add_argument("--sweep-epochs", type=int, help="epochs per sweep trial (default 6; tiny 1)")
    parser.add_argument("--extract-records", type=int, help="records extracted (default 512; tiny 8)")
    parser.add_argument(
        "--parts",
        default="heads,recurrence,compiled,sweep,extraction,tests,recurrence_compiled",
        help="which parts, comma-separated",
    )
    parser.add_argument("--work", help="folder for the generated data (default a temporary one)")
    args = parser.parse_args(argv)
    tiny = args.tiny
    shapes = TINY_SHAPES if tiny else PAPER_SHAPES
    work = Path(args.work or tempfile.mkdtemp(prefix="device-check-"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    started = time.perf_counter()
    report = {"tiny": tiny, "environment": environment(), "shapes": {**shapes, "map_shape": list(shapes["map_shape"])}}

    def save(part: str, value) -> None:
        report[part] = value
        report["seconds"] = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps(report, indent=1))
        print(f"{part} done at {report['seconds']} s", flush=True)

    save("started", True)
    parts = args.parts.split(",")
    cache = work / "paper-shapes.h5"
    if {"heads", "compiled", "sweep"} & set(parts) and not cache.exists():
        from spp_scl.cache.synthetic import write_synthetic_cache

        write_synthetic_cache(cache, shapes["sizes"], layers=shapes["layers"], dim=shapes["dim"],
                              map_shape=shapes["map_shape"], mean_tokens=31.0)  # fmt: skip
    if "heads" in parts:
        save("heads", heads(cache, args.epochs or (2 if tiny else 3), work / "heads"))
    if "recurrence" in parts:
        save("recurrence", recurrence(tiny))
    if "compiled" in parts:
        save("compiled", compiled(cache, tiny, work / "compiled"))
    if "sweep" in parts:
        save("sweep", sweep(cache, args.sweep_trials or (2 if tiny else 27), args.sweep_epochs or (1 if tiny else 6),
                            work / "sweep"))  # fmt: skip
    if "extraction" in parts:
        save("extraction", extraction(args.extract_records or (8 if tiny else 512), tiny, work / "extraction"))
    if "tests" in parts:
        save("tests", gpu_tests())
    if "recurrence_compiled" in parts and (tiny or torch.cuda.is_available()):
        save("recurrence_compiled", recurrence(tiny, compiled=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
