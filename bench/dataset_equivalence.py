"""A split folder and the same data as a `datasets` dataset give the same cache: the folder is saved with
save_to_disk (an Image column holding each image file's bytes, dev as validation), extracted with the settings of
an existing cache of the folder (read from its provenance and fingerprint), and every array of the two caches is
compared (ids, labels, lengths, offsets, features). Prints one JSON line; exits 1 when an array differs.

    python -m bench.dataset_equivalence --data data/mvsa-single --dataset mvsa-single \
        --cache cache/files/mvsa-single.h5 --work /tmp/equivalence
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from spp_scl.cache.layout import read_attrs
from spp_scl.extract.config import ExtractConfig
from spp_scl.extract.hf_dataset import save_split_folder
from spp_scl.extract.pipeline import run


def arrays(path: Path) -> dict[str, np.ndarray]:
    found = {}
    with h5py.File(path, "r") as file:

        def visit(name, item):
            if isinstance(item, h5py.Dataset) and "/" in name:  # a split's arrays, not the file's skip list
                found[name] = item.asstr()[:] if item.dtype.kind == "O" else item[:]

        file.visititems(visit)
    return found


def settings_of(cache: Path) -> dict:
    """The extract options that made `cache`, from its attributes."""
    attrs = read_attrs(cache)
    fingerprint, provenance = attrs["fingerprint"], attrs["provenance"]
    return {
        "text_encoder": provenance["text_encoder"],
        "image_encoder": provenance["image_encoder"],
        "text_layers": fingerprint["text"]["layers"],
        "max_length": fingerprint["text"]["max_length"],
        "sentence_token": fingerprint["text"].get("sentence_token", "first"),
        "image_resize": fingerprint["image"]["preprocess"]["resize"],
        "image_crop": fingerprint["image"]["preprocess"]["crop"],
        "dtype": fingerprint["dtype"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the split folder")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--cache", required=True, help="a cache extracted from --data")
    parser.add_argument("--work", required=True, help="folder for the saved dataset and its cache")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    saved = work / "saved"
    started = time.time()
    if not (saved / "dataset_dict.json").is_file():
        save_split_folder(args.data, args.dataset, saved)
    saving = time.time() - started
    cache = work / "from-datasets.h5"
    config = ExtractConfig(
        data=str(saved), dataset=args.dataset, out=str(cache), progress=False, **settings_of(Path(args.cache))
    )
    summary = run(config, log=lambda *_: None)
    first, second = arrays(Path(args.cache)), arrays(cache)
    differing = sorted(key for key in first.keys() | second.keys() if key not in first or key not in second
                       or not np.array_equal(first[key], second[key]))  # fmt: skip
    print(
        json.dumps(
            {
                "arrays": len(first),
                "differing": differing,
                "records": summary.records,
                "save_seconds": round(saving, 1),
                "extract_seconds": round(summary.seconds, 1),
            }
        )
    )
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
