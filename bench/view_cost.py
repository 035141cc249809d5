"""What stored views cost: bytes per record and view, and extraction seconds per record and view, per view kind.

On the first N train records of a real split folder (default ../shared/data/mvsa-single, its first 256 train
records, written to a temporary split folder with the images read in place), with the real stand-in encoders
(default MPNet-base layers 9-12 and the EfficientNet-Lite2 plugin), one extraction per kind with one view
(V = 1) and one without views; a kind's seconds are its extraction's minus the clean one's (the same encoder
loading, decoding and clean forwards in both), divided by the records, as CPU seconds of the process (all its
threads: robust to other processes on a shared machine) and as wall-clock seconds. Bytes are the view arrays'
stored bytes per record and view.

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.view_cost [--records 256] [--kinds all]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import h5py

from spp_scl.extract.config import ExtractConfig
from spp_scl.extract.pipeline import run

HOME_ENCODERS = Path.home() / ".cache" / "real-encoders"
SHARED = Path(__file__).resolve().parents[2] / "shared"

# kind -> the ExtractConfig settings of a one-view extraction of that kind alone
KINDS = {
    "text dropout (4 layers)": {"view_image_augment": False},
    "text dropout (last layer)": {"view_image_augment": False, "view_text_layers": [-1]},
    "text paraphrase (4 layers)": {"view_image_augment": False, "view_text_dropout": False, "paraphrases": True},
    "image RandAugment": {"view_text_dropout": False},
    "image BatchNorm train mode": {
        "view_text_dropout": False,
        "view_image_augment": False,
        "view_image_batchnorm": True,
    },
}


def subset(data: Path, records: int, folder: Path) -> Path:
    train = json.loads((data / "train.json").read_text(encoding="utf-8"))[:records]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.json").write_text(json.dumps(train))
    return folder


def cpu_seconds() -> float:
    """CPU seconds of this process's threads and of its finished children (the forked HDF5 writer)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measure(base: dict, settings: dict, out: Path, paraphrases: Path) -> tuple[tuple[float, float], dict]:
    """((wall seconds, CPU seconds), view bytes per record and view by array) of one extraction."""
    settings = dict(settings)
    if settings.pop("paraphrases", False):
        settings["view_paraphrases"] = str(paraphrases)
    started, cpu = time.perf_counter(), cpu_seconds()
    summary = run(ExtractConfig(**base, out=str(out), **settings))
    seconds = (time.perf_counter() - started, cpu_seconds() - cpu)
    sizes = {}
    with h5py.File(out, "r") as file:
        group = file["train"]
        if "views" in group:
            for name in ("image_maps", "token_states"):
                if name in group["views"]:
                    dataset = group["views"][name]
                    sizes[name] = dataset.size * dataset.dtype.itemsize / summary.records["train"] / dataset.shape[1]
    return seconds, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "mvsa-single"))
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--text-encoder", default=str(HOME_ENCODERS / "all-mpnet-base-v2"))
    parser.add_argument("--text-layers", default="9,10,11,12")
    parser.add_argument("--image-encoder", default=str(SHARED / "encoders" / "efficientnet_lite2.py") + ":build")
    parser.add_argument("--kinds", default="all", help=f"comma-separated subset of: {', '.join(KINDS)}")
    args = parser.parse_args()
    data = Path(args.data)
    kinds = list(KINDS) if args.kinds == "all" else [k.strip() for k in args.kinds.split(",")]
    with tempfile.TemporaryDirectory() as temporary:
        folder = subset(data, args.records, Path(temporary) / "split")
        base = {
            "data": str(folder),
            "dataset": "mvsa-single",
            "images": str(data / "images"),
            "text_encoder": args.text_encoder,
            "text_layers": [int(x) for x in args.text_layers.split(",")],
            "image_encoder": args.image_encoder,
            "progress": False,
        }
        paraphrases = data / "back_translations.json"
        (wall, cpu), _ = measure(base, {}, Path(temporary) / "clean.h5", paraphrases)
        print(
            f"clean extraction of {args.records} train records: {wall:.1f} s wall, {cpu:.1f} s CPU "
            f"({cpu / args.records:.3f} CPU s per record, encoder loading included)",
            flush=True,
        )
        print("| view kind | KiB per record and view | CPU s per record and view | wall s per record and view |")
        print("|---|---|---|---|")
        for number, kind in enumerate(kinds):
            settings = {"views": 1, **KINDS[kind]}
            (kind_wall, kind_cpu), sizes = measure(base, settings, Path(temporary) / f"kind{number}.h5", paraphrases)
            kib = sum(sizes.values()) / 1024
            extra_cpu, extra_wall = (kind_cpu - cpu) / args.records, (kind_wall - wall) / args.records
            print(f"| {kind} | {kib:.1f} | {extra_cpu:.3f} | {extra_wall:.3f} |", flush=True)


if __name__ == "__main__":
    main()
