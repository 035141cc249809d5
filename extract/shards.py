"""Shard files of an unfinished extraction: written whole or not at all, checked whenever they are read back.

A shard, `<cache>.parts/shard-NNNNN.safetensors`, holds the features of a fixed range of records and, in its
metadata, the kept records, their ids, the skipped ones and `sha256`: a hash of every tensor (name, dtype, shape,
bytes) and of the other metadata. It is written to a temporary name and renamed, so a kill leaves the whole file
or none; the hash catches what a rename cannot: a file cut short, emptied or changed on disk since (a full disk,
a bad copy, a flipped bit). A shard that fails its check is named, deleted and extracted again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from spp_scl.core.errors import InputError
from spp_scl.core.storage import write_atomically

CHECKSUM_KEY = "sha256"


class ShardDamaged(InputError):
    """A shard file that cannot be read or does not match its checksum."""


def shard_path(parts: Path, index: int) -> Path:
    return parts / f"shard-{index:05d}.safetensors"


def content_sha256(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}\n".encode())
        digest.update(array.view(np.uint8).reshape(-1).data)
    for key in sorted(metadata):
        if key != CHECKSUM_KEY:
            digest.update(f"{key}={metadata[key]}\n".encode())
    return digest.hexdigest()


def save_shard(path: Path, tensors: dict, metadata: dict[str, str]) -> None:
    """Write a shard (torch tensors) with its checksum; a full disk is a StorageError, finished shards stay."""
    from safetensors.torch import save

    arrays = {name: tensor.numpy() for name, tensor in tensors.items()}
    metadata = {**metadata, CHECKSUM_KEY: content_sha256(arrays, metadata)}
    write_atomically(path, save(tensors, metadata=metadata), kept=f"finished shards are kept in {path.parent}")


def read_shard(
    path: Path, names: tuple[str, ...] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, tuple[int, ...]]]:
    """(arrays, metadata, every tensor's shape) of a shard; with `names` None every tensor is read and the
    checksum checked, else only those named (no check). Raises ShardDamaged naming the file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
            wanted = handle.keys() if names is None else names
            arrays = {name: handle.get_tensor(name) for name in wanted}
    except FileNotFoundError:
        raise
    except Exception as error:  # safetensors reports a cut or garbled file with its own error types
        raise ShardDamaged(f"shard {path} cannot be read ({type(error).__name__}: {error})") from None
    if names is None:
        stored = metadata.get(CHECKSUM_KEY)
        if stored is None:
            raise ShardDamaged(f"shard {path} has no checksum (written by an earlier version)")
        if content_sha256(arrays, metadata) != stored:
            raise ShardDamaged(f"shard {path} does not match its checksum (changed on disk since it was written)")
    for key in ("records", "ids", "skipped"):
        try:
            json.loads(metadata[key])
        except (KeyError, ValueError):
            raise ShardDamaged(f"shard {path}: metadata field {key!r} is missing or not JSON") from None
    return arrays, metadata, shapes


def shard_problem(path: Path) -> str | None:
    """Why a shard cannot be used, or None when it reads whole and matches its checksum."""
    try:
        read_shard(path)
    except ShardDamaged as damaged:
        return str(damaged)
    return None
