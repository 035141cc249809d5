"""One copy of a split's features per machine, mapped by every process that trains on it (the jobs of a sweep,
a table or a comparison).

Held in memory, each job's CachedSplit holds its own copy: J jobs take J times the split's bytes, and past the
memory budget every job reads the file batch by batch instead, at less than half the speed (docs/benchmarks.md).
A shared split is the split's large features written once as plain arrays (`.npy`: the image maps channels-last and
the token states, in the cache's dtype, read through the cache's checksummed chunks) into a folder; each job maps
them read-only, so the page cache holds one copy whatever the number of jobs, and a batch is gathered as from memory.

The folder records the cache it was written from (path, size, modification time, fingerprint); a copy that does not
match the cache as it is now, or that a stopped writer left without its record, is never taken. The run that writes
it removes it when its jobs are done (`remove_shared`; runs/trials/split_storage.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from spp_scl.cache.checksums import damage_as_error, damaged
from spp_scl.cache.layout import open_cache, read_attrs

SHARED_ARRAYS = ("image_maps", "token_states")  # the first-token vectors are small: each process holds its own
RECORD = "source.json"


def _source(cache: str | Path, fingerprint: dict | None = None) -> dict:
    """What a copy was written from, as its record reads back (JSON: tuples as lists)."""
    cache = Path(cache).resolve()
    stat = cache.stat()
    fingerprint = read_attrs(cache)["fingerprint"] if fingerprint is None else fingerprint
    source = {"cache": str(cache), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "fingerprint": fingerprint}
    return json.loads(json.dumps(source))


def share_split(cache: str | Path, split: str, folder: str | Path) -> Path:
    """`folder/<split>/`, holding `split`'s SHARED_ARRAYS as .npy files and, written last, the record of the cache
    they come from (a copy without it is never taken). One writer per folder: the run that owns it."""
    target = Path(folder) / split
    target.mkdir(parents=True, exist_ok=True)
    (target / RECORD).unlink(missing_ok=True)
    source = _source(cache)
    with open_cache(cache) as file, damage_as_error(cache, f"the {split} split"):
        group = file[split]
        for name in SHARED_ARRAYS:
            _write_array(group[name], target / f"{name}.npy", channels_last=name == "image_maps", cache=cache)
    (target / RECORD).write_text(json.dumps(source))
    return target


def _write_array(dataset, path: Path, channels_last: bool, cache, records_per_read: int = 256) -> None:
    """`dataset` into a .npy file at `path`, a few hundred records at a time (never a whole copy in memory); image
    maps [N, C, h, w] as [N, h, w, C], the layout CachedSplit holds them in. Plain writes, not a writable map: a
    full disk is an OSError here, not a SIGBUS later."""
    shape = dataset.shape
    if channels_last:
        shape = (shape[0], *shape[2:], shape[1])
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as out:
        header = {"descr": np.lib.format.dtype_to_descr(dataset.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(out, header)
        for start in range(0, dataset.shape[0], records_per_read):
            try:
                part = dataset[start : start + records_per_read]
            except OSError as error:  # a chunk that fails its fletcher32 check
                raise damaged(cache, dataset.name.lstrip("/"), error) from None
            out.write(np.ascontiguousarray(part.transpose(0, 2, 3, 1) if channels_last else part).tobytes())
    partial.replace(path)


def _record(target: Path) -> dict | None:
    try:
        return json.loads((target / RECORD).read_text())
    except (OSError, ValueError):
        return None


def shared_arrays(
    cache: str | Path, split: str, folder: str | Path, fingerprint: dict | None = None
) -> dict[str, np.ndarray] | None:
    """`split`'s SHARED_ARRAYS mapped read-only from `folder`, or None when the folder holds no copy of this cache
    as it is now (the caller then holds or reads its own). `fingerprint`: the cache's, when the caller has read it."""
    target = Path(folder) / split
    if _record(target) != _source(cache, fingerprint):
        return None
    return {name: np.load(target / f"{name}.npy", mmap_mode="r") for name in SHARED_ARRAYS}


def remove_shared(folder: str | Path) -> None:
    """The shared copies (mapped arrays stay readable until their processes close them)."""
    shutil.rmtree(folder, ignore_errors=True)
