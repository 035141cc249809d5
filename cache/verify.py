"""Read a whole cache file and check it against its checksums (`spp-scl inspect --verify`).

Every dataset is read in full (HDF5 checks fletcher32 on each chunk on the way) and hashed; the hashes must
equal the `sha256` attributes the writer stored, the attributes their `attrs_sha256`, and the layout must hold
together (offsets against token counts, one label per id). A format 1 cache has no checksums: it is reported
as not verifiable, which is not the same as whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from spp_scl.cache.checksums import DATASET_KEY, CacheDamaged, dataset_sha256
from spp_scl.cache.layout import SPLIT_ARRAYS, is_verifiable, open_cache, read_attrs
from spp_scl.cache.view_layout import view_dataset_names, view_layout_problems


@dataclass
class Verification:
    path: Path
    verifiable: bool
    problems: list[str] = field(default_factory=list)
    checked: int = 0  # datasets whose content hash was checked

    def text(self) -> str:
        if not self.verifiable:
            return (
                f"{self.path}: format 1, written before checksums: it cannot be verified "
                "(`spp-scl extract --force` rebuilds it with them)"
            )
        if self.problems:
            return f"{self.path}: DAMAGED\n  " + "\n  ".join(self.problems)
        return f"{self.path}: verified, {self.checked} datasets match their checksums"


def _read_problem(error: Exception) -> str:
    return str(error).split(" (")[0]


def verify_cache(path: str | Path) -> Verification:
    path = Path(path)
    try:
        attrs = read_attrs(path)
    except CacheDamaged as damaged:
        return Verification(path, True, [str(damaged)])
    result = Verification(path, is_verifiable(attrs))
    with open_cache(path) as file:
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
        if result.verifiable:
            names = [f"{split}/{name}" for split in splits for name in SPLIT_ARRAYS if name in file[split]]
            names += view_dataset_names(file)
            names += ["skipped"] if "skipped" in file else []
            for name in names:
                dataset = file[name]
                stored = dataset.attrs.get(DATASET_KEY)
                try:
                    actual = dataset_sha256(dataset)
                except OSError as error:  # a chunk that fails its fletcher32 check, or cannot be read at all
                    result.problems.append(f"{name} cannot be read ({_read_problem(error)})")
                    continue
                result.checked += 1
                if stored is None:
                    result.problems.append(f"{name} has no checksum")
                elif actual != stored:
                    result.problems.append(f"{name} does not match its checksum")
    return result
