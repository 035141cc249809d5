"""The HDF5 layout of a feature cache, and the writer that lays a finished extraction out in it.

One file per dataset and encoder setting, one group per split:
    /<split>/ids            [N] str       record ids, in the order of the split file
    /<split>/labels         [N] int64
    /<split>/text_lengths   [N] int32     real tokens kept per text (special tokens included)
    /<split>/token_offsets  [N+1] int64   record i's tokens are token_states[offsets[i]:offsets[i+1]]
    /<split>/image_maps     [N, C, h, w]  one chunk per record: training reads random records
    /<split>/first_token    [N, K, D]     per-layer first-token ([CLS] or <s>) vectors
    /<split>/token_states   [T, K, D]     every record's real tokens, one after the other, no padding
    /skipped                [S] str       one JSON object per skipped record: split, id, source, reason
File attributes: format_version, dataset, class_names, text_layers, dtype (JSON where not scalar),
fingerprint (JSON: everything that determines the features) and provenance (JSON: paths, versions).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

SPLIT_ARRAYS = ("ids", "labels", "text_lengths", "token_offsets", "image_maps", "first_token", "token_states")
CHUNK_BYTES = 256 * 1024  # token-state chunks of about this size: a record of ~30 tokens touches 1-2 chunks


class CacheWriter:
    """Writes into `<path>.tmp` and renames it to `path` on `finish`, so a cache file is always whole."""

    def __init__(
        self,
        path: Path,
        attrs: dict,
        split_sizes: dict[str, tuple[int, int]],
        map_shape: tuple[int, int, int],
        layers_dim: tuple[int, int],
        dtype: str,
    ):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.file = h5py.File(self.tmp, "w")
        for key, value in attrs.items():
            self.file.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
        self.position = {}
        k, d = layers_dim
        token_rows = max(1, CHUNK_BYTES // (k * d * np.dtype(dtype).itemsize))
        for split, (records, tokens) in split_sizes.items():
            group = self.file.create_group(split)
            group.create_dataset("ids", (records,), dtype=h5py.string_dtype())
            group.create_dataset("labels", (records,), dtype="int64")
            group.create_dataset("text_lengths", (records,), dtype="int32")
            group.create_dataset("token_offsets", (records + 1,), dtype="int64")
            group.create_dataset(
                "image_maps", (records, *map_shape), dtype=dtype, chunks=(1, *map_shape) if records else None
            )
            group.create_dataset(
                "first_token", (records, k, d), dtype=dtype, chunks=(min(records, 256), k, d) if records else None
            )
            group.create_dataset(
                "token_states", (tokens, k, d), dtype=dtype, chunks=(min(tokens, token_rows), k, d) if tokens else None
            )
            self.position[split] = (0, 0)

    def append(
        self,
        split: str,
        ids: list[str],
        labels: np.ndarray,
        text_lengths: np.ndarray,
        image_maps: np.ndarray,
        first_token: np.ndarray,
        token_states: np.ndarray,
    ) -> None:
        group, (row, token) = self.file[split], self.position[split]
        count, tokens = len(ids), int(text_lengths.sum())
        group["ids"][row : row + count] = ids
        group["labels"][row : row + count] = labels
        group["text_lengths"][row : row + count] = text_lengths
        group["token_offsets"][row + 1 : row + count + 1] = token + np.cumsum(text_lengths)
        group["image_maps"][row : row + count] = image_maps
        group["first_token"][row : row + count] = first_token
        group["token_states"][token : token + tokens] = token_states
        self.position[split] = (row + count, token + tokens)

    def finish(self, skipped: list[dict]) -> None:
        for split, (row, token) in self.position.items():
            group = self.file[split]
            if row != len(group["ids"]) or token != len(group["token_states"]):
                raise RuntimeError(
                    f"cache writer: split {split} got {row} records / {token} tokens, "
                    f"expected {len(group['ids'])} / {len(group['token_states'])}"
                )
        self.file.create_dataset("skipped", data=[json.dumps(s) for s in skipped], dtype=h5py.string_dtype())
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def read_attrs(path: Path) -> dict:
    """The file attributes, JSON ones decoded."""
    with h5py.File(path, "r") as file:
        attrs = {}
        for key, value in file.attrs.items():
            try:
                attrs[key] = json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value
            except json.JSONDecodeError:
                attrs[key] = value
        return attrs


def read_skipped(path: Path) -> list[dict]:
    with h5py.File(path, "r") as file:
        return [json.loads(s) for s in file["skipped"].asstr()[:]] if "skipped" in file else []


def skip_reason_counts(skipped: list[dict]) -> list[tuple[str, int]]:
    """(reason kind, count), most common first: a reason without its details ('image not found: x.jpg' ->
    'image not found')."""
    from collections import Counter

    return Counter(item["reason"].split(":")[0].split(" (")[0] for item in skipped).most_common()
