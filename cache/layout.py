"""The HDF5 layout of a feature cache, and the writer that lays a finished extraction out in it.

One file per dataset and encoder setting, one group per split:
    /<split>/ids            [N] str       record ids, in the order of the split file
    /<split>/labels         [N] int64
    /<split>/text_lengths   [N] int32     real tokens kept per text (special tokens included)
    /<split>/token_offsets  [N+1] int64   record i's tokens are token_states[offsets[i]:offsets[i+1]]
    /<split>/image_maps     [N, C, h, w]  one chunk per record: training reads random records
    /<split>/first_token    [N, K, D]     per-layer sentence vectors: the first token ([CLS], <s>) unless the
                                         fingerprint's text.sentence_token names another
    /<split>/token_states   [T, K, D]     every record's real tokens, one after the other, no padding
    /skipped                [S] str       one JSON object per skipped record: split, id, source, reason
File attributes: format_version, dataset, class_names, text_layers, dtype (JSON where not scalar),
fingerprint (JSON: everything that determines the features), provenance (JSON: paths, versions) and, from
format 2 on, attrs_sha256; each dataset has a `sha256` attribute and the feature arrays HDF5's fletcher32
filter (cache/checksums.py). Format 1 files (no checksums) are read as before, without those checks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from spp_scl.cache.checksums import ATTRS_KEY, DATASET_KEY, CacheDamaged, ContentHash, attrs_sha256, damage_as_error
from spp_scl.core.errors import InputError

SPLIT_ARRAYS = ("ids", "labels", "text_lengths", "token_offsets", "image_maps", "first_token", "token_states")
FORMAT_VERSION = 2  # 2: sha256 per dataset and of the attributes, fletcher32 on the feature arrays
CHUNK_BYTES = 256 * 1024  # token-state chunks of about this size: a record of ~30 tokens touches 1-2 chunks


class CacheWriter:
    """Writes into `<path>.tmp`; `finish` checks what was written and renames it to `path`, so a cache file is
    always whole. `close` stops before the check and the rename (for a caller that does those itself)."""

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
        self.tmp = temporary_path(self.path)
        self.attrs = {**attrs, "format_version": FORMAT_VERSION}
        self.file = h5py.File(self.tmp, "w")
        self.position = {}
        self.hashes: dict[str, ContentHash] = {}
        self.lengths: dict[str, list[np.ndarray]] = {}
        k, d = layers_dim
        token_rows = max(1, CHUNK_BYTES // (k * d * np.dtype(dtype).itemsize))
        for split, (records, tokens) in split_sizes.items():
            group = self.file.create_group(split)
            group.create_dataset("ids", (records,), dtype=h5py.string_dtype())
            group.create_dataset("labels", (records,), dtype="int64")
            group.create_dataset("text_lengths", (records,), dtype="int32")
            group.create_dataset("token_offsets", (records + 1,), dtype="int64")
            # fletcher32 needs chunks, and an empty dataset has none.
            group.create_dataset(
                "image_maps",
                (records, *map_shape),
                dtype=dtype,
                chunks=(1, *map_shape) if records else None,
                fletcher32=bool(records),
            )
            group.create_dataset(
                "first_token",
                (records, k, d),
                dtype=dtype,
                chunks=(min(records, 256), k, d) if records else None,
                fletcher32=bool(records),
            )
            group.create_dataset(
                "token_states",
                (tokens, k, d),
                dtype=dtype,
                chunks=(min(tokens, token_rows), k, d) if tokens else None,
                fletcher32=bool(tokens),
            )
            self.position[split] = (0, 0)
            self.lengths[split] = []
            for name in SPLIT_ARRAYS:
                self.hashes[f"{split}/{name}"] = ContentHash()

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
        """The next records of `split`, in order (the hashes are fed in the order the rows are written)."""
        group, (row, token) = self.file[split], self.position[split]
        count = len(ids)
        values = {
            "ids": np.asarray(ids, dtype=object),
            "labels": labels,
            "text_lengths": text_lengths,
            "image_maps": image_maps,
            "first_token": first_token,
            "token_states": token_states,
        }
        for name, value in values.items():
            if name != "ids":
                values[name] = np.ascontiguousarray(value, dtype=group[name].dtype)
            self.hashes[f"{split}/{name}"].update(values[name])
        tokens = int(values["text_lengths"].sum())
        group["ids"][row : row + count] = ids
        group["labels"][row : row + count] = values["labels"]
        group["text_lengths"][row : row + count] = values["text_lengths"]
        group["token_offsets"][row + 1 : row + count + 1] = token + np.cumsum(values["text_lengths"])
        group["image_maps"][row : row + count] = values["image_maps"]
        group["first_token"][row : row + count] = values["first_token"]
        group["token_states"][token : token + tokens] = values["token_states"]
        self.lengths[split].append(values["text_lengths"])
        self.position[split] = (row + count, token + tokens)

    def close(self, skipped: list[dict]) -> None:
        """Write the skip list and the checksums and close `<path>.tmp` (not yet checked, not renamed)."""
        for split, (row, token) in self.position.items():
            group = self.file[split]
            if row != len(group["ids"]) or token != len(group["token_states"]):
                raise RuntimeError(
                    f"cache writer: split {split} got {row} records / {token} tokens, "
                    f"expected {len(group['ids'])} / {len(group['token_states'])}"
                )
            lengths = np.concatenate(self.lengths[split]) if self.lengths[split] else np.zeros(0, np.int64)
            self.hashes[f"{split}/token_offsets"].update(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]))
            for name in SPLIT_ARRAYS:
                group[name].attrs[DATASET_KEY] = self.hashes[f"{split}/{name}"].hexdigest()
        lines = [json.dumps(s) for s in skipped]
        skipped_hash = ContentHash()
        skipped_hash.update(np.asarray(lines, dtype=object))
        self.file.create_dataset("skipped", data=lines, dtype=h5py.string_dtype())
        self.file["skipped"].attrs[DATASET_KEY] = skipped_hash.hexdigest()
        stored = {
            key: value if isinstance(value, (str, int, float)) else json.dumps(value)
            for key, value in self.attrs.items()
        }
        for key, value in stored.items():
            self.file.attrs[key] = value
        self.file.attrs[ATTRS_KEY] = attrs_sha256(stored)
        self.file.close()

    def finish(self, skipped: list[dict]) -> None:
        self.close(skipped)
        publish(self.tmp, self.path)

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def temporary_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".tmp")


def publish(tmp: Path, path: Path) -> None:
    """Check a finished `<path>.tmp` against its checksums (every byte is read back) and rename it to `path`;
    a file that does not read back as written is removed and refused, never renamed into place."""
    from spp_scl.cache.verify import verify_cache

    problems = verify_cache(tmp).problems
    if problems:
        Path(tmp).unlink(missing_ok=True)
        raise CacheDamaged(f"{tmp} did not read back as written ({problems[0]}); it was removed: rerun")
    os.replace(tmp, path)


def open_cache(path: Path) -> h5py.File:
    """The cache file opened for reading; a missing, cut or non-HDF5 file is a one-line CacheDamaged."""
    path = Path(path)
    if not path.is_file():
        raise CacheDamaged(f"{path}: no such cache file" if not path.exists() else f"{path} is not a file")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise CacheDamaged(f"{path} is not a readable HDF5 cache ({str(error).split(' (')[0]})") from None


def read_attrs(path: Path) -> dict:
    """The file attributes, JSON ones decoded. From format 2 on they are checked against `attrs_sha256`."""
    with open_cache(path) as file, damage_as_error(path, "the file attributes"):
        raw = dict(file.attrs.items())
        # Inside: the hash sorts the keys, and damaged keys (bytes beside str) fail the sort.
        intact = int(raw.get("format_version", 1)) < 2 or raw.get(ATTRS_KEY) == attrs_sha256(raw)
    if not intact:
        raise CacheDamaged(f"{path}: the file attributes do not match their checksum (the file is damaged)")
    attrs = {}
    for key, value in raw.items():
        try:
            attrs[key] = json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value
        except json.JSONDecodeError:
            attrs[key] = value
    for key in ("fingerprint", "class_names", "text_layers", "dtype"):
        if key not in attrs:
            raise CacheDamaged(f"{path} has no {key!r} attribute: not a cache written by this tool")
    return attrs


def cache_dataset(path: Path) -> str | None:
    """The dataset a cache holds (its fingerprint's name); None for a generated cache or one that cannot be read
    (reading it for training names the problem)."""
    try:
        dataset = read_attrs(Path(path))["fingerprint"].get("dataset")
    except (InputError, OSError, KeyError, AttributeError):
        return None
    return dataset.get("name") if isinstance(dataset, dict) else None


def is_verifiable(attrs: dict) -> bool:
    """Format 1 caches were written before checksums: they open, but nothing can check them."""
    return int(attrs.get("format_version", 1)) >= 2


def split_sizes(path: Path) -> dict[str, int]:
    """The records of each split the cache holds (train, dev, test, in that order)."""
    with open_cache(path) as file, damage_as_error(path, "its splits"):
        return {split: len(file[split]["ids"]) for split in ("train", "dev", "test") if split in file}


def read_skipped(path: Path) -> list[dict]:
    with open_cache(path) as file, damage_as_error(path, "the list of skipped records"):
        return [json.loads(s) for s in file["skipped"].asstr()[:]] if "skipped" in file else []


def skip_reason_counts(skipped: list[dict]) -> list[tuple[str, int]]:
    """(reason kind, count), most common first: a reason without its details ('image not found: x.jpg' ->
    'image not found')."""
    from collections import Counter

    return Counter(item["reason"].split(":")[0].split(" (")[0] for item in skipped).most_common()
