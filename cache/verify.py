"""Read a whole cache file and check it against its checksums (`spp-scl inspect --verify`).

Every dataset is read in full (HDF5 checks fletcher32 on each chunk on the way) and hashed; the hashes must
equal the `sha256` attributes the writer stored, the attributes their `attrs_sha256`, and the layout must hold
together (offsets against token counts, one label per id). In the same read every feature is checked to be finite:
a whole file can still hold inf (float16 stores values beyond 65504 so) and is no use to train on. Metadata too
damaged for h5py to read is a problem like any other, never a traceback. A format 1 cache has no checksums: it
is reported as not verifiable, which is not the same as whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from spp_scl.cache.checksums import DATASET_KEY, H5_READ_ERRORS, CacheDamaged, dataset_sha256
from spp_scl.cache.layout import SPLIT_ARRAYS, is_verifiable, open_cache, read_attrs
from spp_scl.cache.view_layout import view_dataset_names, view_layout_problems


@dataclass
class Verification:
    path: Path
    verifiable: bool
    problems: list[str] = field(default_factory=list)
    checked: int = 0  # datasets whose content hash was checked
    non_finite: list[str] = field(default_factory=list)  # feature arrays holding inf or NaN (whole, yet unusable)

    def text(self) -> str:
        if not self.verifiable:
            return (
                f"{self.path}: format 1, written before checksums: it cannot be verified "
                "(`spp-scl extract --force` rebuilds it with them)"
            )
        if self.problems or self.non_finite:
            return f"{self.path}: {'DAMAGED' if self.problems else 'NON-FINITE FEATURES'}\n  " + "\n  ".join(
                self.problems + self.non_finite
            )
        return f"{self.path}: verified, {self.checked} datasets match their checksums, every feature is finite"

    def one_line(self) -> str:
        """The error line of `spp-scl inspect --verify` for a cache that is damaged or holds non-finite features."""
        parts = [f"{self.path} is damaged: " + "; ".join(self.problems)] if self.problems else []
        if self.non_finite:
            parts.append(
                f"{self.path} holds non-finite features: "
                + "; ".join(self.non_finite)
                + " (float16 stores values beyond 65504 as inf: `spp-scl extract --force --dtype float32` rebuilds it)"
            )
        return "; ".join(parts)


def _read_problem(error: Exception) -> str:
    text = error.args[0] if isinstance(error, KeyError) and error.args else error
    return str(text).split(" (")[0]


def verify_cache(path: str | Path) -> Verification:
    path = Path(path)
    try:
        attrs = read_attrs(path)
    except CacheDamaged as damaged:
        return Verification(path, True, [str(damaged)])
    result = Verification(path, is_verifiable(attrs))
    try:
        with open_cache(path) as file:
            splits = _check_layout(file, result)
            if result.verifiable:
                _check_contents(file, splits, result)
    except CacheDamaged as damaged:
        result.problems.append(str(damaged))
    except H5_READ_ERRORS as error:  # damaged metadata: an object header, a heap, a string's encoding
        result.problems.append(f"its structure cannot be read ({type(error).__name__}: {_read_problem(error)})")
    return result


def _check_layout(file: h5py.File, result: Verification) -> list[str]:
    splits = [name for name in file if isinstance(file[name], h5py.Group)]
    for split in splits:
        group = file[split]
        missing = [name for name in SPLIT_ARRAYS if name not in group]
        if missing:
            result.problems.append(f"{split}: missing datasets {missing}")
            continue
        records = len(group["ids"])
        if not all(len(group[name]) == records for name in ("labels", "text_lengths", "image_maps")):
            result.problems.append(f"{split}: ids, labels, text_lengths and image_maps differ in length")
        try:
            offsets, lengths = group["token_offsets"][:], group["text_lengths"][:]
            if len(offsets) != records + 1 or offsets[-1] != len(group["token_states"]):
                result.problems.append(f"{split}/token_offsets do not end at the number of token states")
            elif not np.array_equal(np.diff(offsets), lengths):
                result.problems.append(f"{split}/token_offsets disagree with text_lengths")
        except OSError as error:
            result.problems.append(f"{split}: the offsets cannot be read ({_read_problem(error)})")
        result.problems.extend(view_layout_problems(group, split))
    return splits


def _check_contents(file: h5py.File, splits: list[str], result: Verification) -> None:
    """Every dataset against its sha256 and, in the same read, every feature for inf and NaN."""
    names = [f"{split}/{name}" for split in splits for name in SPLIT_ARRAYS if name in file[split]]
    names += view_dataset_names(file)
    names += ["skipped"] if "skipped" in file else []
    for name in names:
        dataset = file[name]
        stored = dataset.attrs.get(DATASET_KEY)
        finite = FiniteCount() if dataset.dtype.kind == "f" else None
        try:
            actual = dataset_sha256(dataset, finite)
        except OSError as error:  # a chunk that fails its fletcher32 check, or cannot be read at all
            result.problems.append(f"{name} cannot be read ({_read_problem(error)})")
            continue
        result.checked += 1
        if stored is None:
            result.problems.append(f"{name} has no checksum")
        elif actual != stored:
            result.problems.append(f"{name} does not match its checksum")
        if finite is not None and finite.count:
            first = _record_id(file, name, finite.first_row)
            result.non_finite.append(
                f"{name} holds {finite.count} inf or NaN values (the first in record id {first!r})"
            )


class FiniteCount:
    """dataset_sha256's on_block: counts the non-finite values and keeps the first row that holds one."""

    def __init__(self) -> None:
        self.count, self.first_row = 0, None

    def __call__(self, start: int, block: np.ndarray) -> None:
        bad = ~np.isfinite(block)
        found = int(bad.sum())
        if found:
            if self.first_row is None:
                self.first_row = start + int(np.flatnonzero(bad.reshape(len(block), -1).any(axis=1))[0])
            self.count += found


def _record_id(file: h5py.File, name: str, row: int) -> str:
    """The id of the record a row of a feature array belongs to (token arrays: through their offsets)."""
    group, array = name.rsplit("/", 1)
    if array == "token_states":
        row = int(np.searchsorted(file[group]["token_offsets"][:], row, side="right")) - 1
    return file[name.split("/", 1)[0]]["ids"].asstr()[row]
