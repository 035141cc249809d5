"""Where a cache keeps the stored views of a split (`spp-scl extract --views V`), and the writer that puts them there.

Beside the clean arrays of a split in `--view-splits`, a group `views`:
    /<split>/views/image_maps     [N, Vi, C, h, w]  record i's image views, one chunk per record and view
    /<split>/views/text_lengths   [N] int32         tokens of each record's view text (its paraphrase, or its text)
    /<split>/views/token_offsets  [N+1] int64       record i's view tokens are token_states[offsets[i]:offsets[i+1]]
    /<split>/views/token_states   [T', Vt, Kv, D]   per token row, its state in each text view, for the Kv view layers
Record-major (a record's views side by side), so the arrays are written in record order and their checksums
(`sha256` attributes, fletcher32 on the features, as for the clean arrays) are fed as they are written. A part
without views (Vi or Vt = 0) has no arrays. A text view's first-token vector is its first token row, so it is
not stored twice. The file attribute `views` (JSON) says how many views of each part and which layers.
"""

from __future__ import annotations

import h5py
import numpy as np

from spp_scl.cache.checksums import DATASET_KEY, ContentHash
from spp_scl.cache.layout import CHUNK_BYTES

VIEW_GROUP = "views"
VIEW_ARRAYS = ("image_maps", "text_lengths", "token_offsets", "token_states")
VIEW_FEATURES = ("image_maps", "token_states")


def view_dataset_names(file: h5py.File) -> list[str]:
    """'<split>/views/<array>' for every view array in the file."""
    names = []
    for split in file:
        group = file[split]
        if isinstance(group, h5py.Group) and VIEW_GROUP in group:
            names.extend(f"{split}/{VIEW_GROUP}/{name}" for name in VIEW_ARRAYS if name in group[VIEW_GROUP])
    return names


class ViewWriter:
    """Creates the view arrays of each view split in an open cache file and appends records in order."""

    def __init__(self, file: h5py.File, sizes: dict[str, tuple[int, int]], attributes: dict, map_shape, dim, dtype):
        self.file = file
        self.image_views, self.text_views = attributes["image_views"], attributes["text_views"]
        self.position: dict[str, tuple[int, int]] = {}
        self.hashes: dict[str, ContentHash] = {}
        self.lengths: dict[str, list[np.ndarray]] = {}
        layers = len(attributes["text_layers"])
        token_rows = max(1, CHUNK_BYTES // max(1, self.text_views * layers * dim * np.dtype(dtype).itemsize))
        for split, (records, tokens) in sizes.items():
            group = file[split].create_group(VIEW_GROUP)
            if self.image_views:
                group.create_dataset(
                    "image_maps",
                    (records, self.image_views, *map_shape),
                    dtype=dtype,
                    chunks=(1, 1, *map_shape) if records else None,
                    fletcher32=bool(records),
                )
            if self.text_views:
                group.create_dataset("text_lengths", (records,), dtype="int32")
                group.create_dataset("token_offsets", (records + 1,), dtype="int64")
                group.create_dataset(
                    "token_states",
                    (tokens, self.text_views, layers, dim),
                    dtype=dtype,
                    chunks=(min(tokens, token_rows), 1, layers, dim) if tokens else None,
                    fletcher32=bool(tokens),
                )
            self.position[split] = (0, 0)
            self.lengths[split] = []
            for name in group:
                self.hashes[f"{split}/{name}"] = ContentHash()

    def append(self, split: str, image_maps, text_lengths, token_states) -> None:
        """The next records of `split`: image views [n, Vi, C, h, w], view text lengths [n], token rows [t, Vt, K, D]
        (None for a part without views)."""
        group, (row, token) = self.file[split][VIEW_GROUP], self.position[split]
        count = 0
        if self.image_views:
            values = np.ascontiguousarray(image_maps, dtype=group["image_maps"].dtype)
            count = len(values)
            group["image_maps"][row : row + count] = values
            self.hashes[f"{split}/image_maps"].update(values)
        tokens = 0
        if self.text_views:
            lengths = np.asarray(text_lengths, dtype=np.int32)
            states = np.ascontiguousarray(token_states, dtype=group["token_states"].dtype)
            count, tokens = len(lengths), int(lengths.sum())
            if len(states) != tokens:
                raise RuntimeError(f"view writer: {split} got {len(states)} token rows for {tokens} view tokens")
            group["text_lengths"][row : row + count] = lengths
            group["token_offsets"][row + 1 : row + count + 1] = token + np.cumsum(lengths, dtype=np.int64)
            group["token_states"][token : token + tokens] = states
            self.hashes[f"{split}/text_lengths"].update(lengths)
            self.hashes[f"{split}/token_states"].update(states)
            self.lengths[split].append(lengths)
        self.position[split] = (row + count, token + tokens)

    def close(self) -> None:
        """Check the counts and store the checksums (the file stays open: the cache writer closes it)."""
        for split, (row, token) in self.position.items():
            group = self.file[split][VIEW_GROUP]
            records = len(self.file[split]["ids"])
            if row != records or (self.text_views and token != len(group["token_states"])):
                raise RuntimeError(f"view writer: split {split} got views of {row} of its {records} records")
            if self.text_views:
                lengths = np.concatenate(self.lengths[split]) if self.lengths[split] else np.zeros(0, np.int64)
                offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
                self.hashes[f"{split}/token_offsets"].update(offsets)
            for name in group:
                group[name].attrs[DATASET_KEY] = self.hashes[f"{split}/{name}"].hexdigest()


def view_layout_problems(group: h5py.Group, split: str) -> list[str]:
    """What does not hold together in a split's views: one row per record, offsets that end at the token rows."""
    if VIEW_GROUP not in group:
        return []
    views, records, problems = group[VIEW_GROUP], len(group["ids"]), []
    for name in ("image_maps", "text_lengths"):
        if name in views and len(views[name]) != records:
            problems.append(f"{split}/{VIEW_GROUP}/{name} has {len(views[name])} rows for {records} records")
    if "token_states" in views:
        try:
            offsets, lengths = views["token_offsets"][:], views["text_lengths"][:]
        except (OSError, KeyError) as error:
            return problems + [f"{split}/{VIEW_GROUP}: the offsets cannot be read ({str(error).split(' (')[0]})"]
        if len(offsets) != records + 1 or offsets[-1] != len(views["token_states"]):
            problems.append(f"{split}/{VIEW_GROUP}/token_offsets do not end at the number of view token rows")
        elif not np.array_equal(np.diff(offsets), lengths):
            problems.append(f"{split}/{VIEW_GROUP}/token_offsets disagree with text_lengths")
    return problems
