"""What the cache's checksums cost: file size, write time and read time with and without fletcher32, and the
time of a full `inspect --verify` (every byte read and hashed with sha256).

    python -m bench.cache_checksums --records 1000 [--repeats 3]

Writes an MVSA-Single-shaped cache twice with spp_scl.cache.layout.CacheWriter's chunking (one image map per chunk,
token states in ~256 KiB chunks): once as the writer does (fletcher32 on the feature arrays) and once with the
filter off, in the same temporary folder; reads each back in full (what training's in-memory load does).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from spp_scl.cache.layout import CHUNK_BYTES
from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.cache.verify import verify_cache


def _copy(source: Path, target: Path, fletcher32: bool) -> float:
    """Rewrite `source`'s feature arrays into `target` with or without fletcher32; returns the write seconds."""
    started = time.perf_counter()
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        for split in ("train", "dev"):
            for name in ("image_maps", "first_token", "token_states"):
                data = src[split][name][:]
                rows = 1 if name == "image_maps" else 256 if name == "first_token" else CHUNK_BYTES // data[0].nbytes
                dst.create_dataset(
                    f"{split}/{name}", data=data, chunks=(min(rows, len(data)), *data.shape[1:]), fletcher32=fletcher32
                )
    return time.perf_counter() - started


def _read_all(path: Path) -> float:
    started = time.perf_counter()
    with h5py.File(path, "r") as file:
        for split in ("train", "dev"):
            for name in ("image_maps", "first_token", "token_states"):
                file[split][name][:]
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=".") as folder:
        folder = Path(folder)
        source = write_synthetic_cache(
            folder / "source.h5", {"train": args.records * 9 // 10, "dev": args.records // 10}, mean_tokens=31
        )
        times = {True: ([], []), False: ([], [])}
        for _ in range(args.repeats):
            for fletcher32 in (False, True):
                path = folder / f"copy-{fletcher32}.h5"
                times[fletcher32][0].append(_copy(source, path, fletcher32))
                times[fletcher32][1].append(_read_all(path))
        sizes = {flag: (folder / f"copy-{flag}.h5").stat().st_size for flag in (False, True)}
        started = time.perf_counter()
        verification = verify_cache(source)
        verify_seconds = time.perf_counter() - started
        assert not verification.problems, verification.problems
        mib = 2**20
        print(f"{args.records} records, feature arrays {sizes[False] / mib:.1f} MiB without fletcher32")
        print(
            f"size: {sizes[True] / mib:.2f} MiB with fletcher32, +{sizes[True] - sizes[False]} bytes "
            f"(+{(sizes[True] / sizes[False] - 1) * 100:.3f}%)"
        )
        for flag in (False, True):
            write, read = times[flag]
            print(
                f"fletcher32 {'on ' if flag else 'off'}: write median {np.median(write):.2f} s, "
                f"full read median {np.median(read):.2f} s (of {args.repeats})"
            )
        print(
            f"inspect --verify of the whole cache ({source.stat().st_size / mib:.1f} MiB, every dataset read and "
            f"hashed): {verify_seconds:.2f} s"
        )


if __name__ == "__main__":
    main()
