"""Content hashes of a cache file (format 2): what lets a damaged file be told from a whole one.

Two layers, because they catch different things at different costs:
- HDF5's fletcher32 filter on the chunked feature arrays (image_maps, first_token, token_states): every read
  of a chunk checks it, so a flipped byte in the features fails the read that would have used it.
- sha256 per dataset (the `sha256` attribute of each), computed from the data the writer was given, and one
  over the file attributes (`attrs_sha256`). The attributes and the small arrays (ids, labels, lengths,
  offsets) are checked whenever a cache is opened; `spp-scl inspect --verify` reads everything and checks
  every hash, as does the writer before it renames a new cache into place.
A hash is over the data in a fixed form: numbers as little-endian bytes of the stored type in row order,
strings as UTF-8, each followed by a NUL byte.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager

import numpy as np

from spp_scl.core.errors import InputError, ToolError

ATTRS_KEY = "attrs_sha256"
DATASET_KEY = "sha256"
BLOCK_BYTES = 64 * 2**20  # rows read at a time when hashing a large dataset


class CacheDamaged(InputError):
    """A cache file that cannot be read, or whose data does not match its checksums."""


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def attrs_sha256(attrs) -> str:
    """A hash of the file attributes as stored (JSON text or numbers), except the hash itself."""
    digest = hashlib.sha256()
    for key in sorted(attrs):
        if key != ATTRS_KEY:
            digest.update(f"{key}={json.dumps(_plain(attrs[key]), sort_keys=True)}\n".encode())
    return digest.hexdigest()


class ContentHash:
    """The sha256 of a dataset's content, fed in row order."""

    def __init__(self):
        self.digest = hashlib.sha256()

    def update(self, values) -> None:
        values = np.asarray(values)
        if values.dtype.kind in "OUS":
            for value in values.reshape(-1):
                text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
                self.digest.update(text.encode("utf-8") + b"\0")
        else:
            little = values.astype(values.dtype.newbyteorder("<"), copy=False)
            self.digest.update(np.ascontiguousarray(little).view(np.uint8).reshape(-1).data)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def dataset_sha256(dataset, on_block=None) -> str:
    """The content hash of an h5py dataset, read in blocks of rows (fletcher32 is checked on the way);
    `on_block(first_row, block)` sees each block as it is read (a check that costs no second read)."""
    content = ContentHash()
    if dataset.shape and dataset.shape[0]:
        row_bytes = max(1, dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64)))
        step = max(1, BLOCK_BYTES // row_bytes)
        strings = dataset.dtype.kind == "O"
        for start in range(0, dataset.shape[0], step):
            block = dataset.asstr()[start : start + step] if strings else dataset[start : start + step]
            content.update(block)
            if on_block is not None:
                on_block(start, block)
    return content.hexdigest()


def damaged(path, what: str, error: Exception) -> CacheDamaged:
    """The one-line error for a part of a cache file that cannot be read (a failed fletcher32 check, say)."""
    reason = str(error.args[0] if isinstance(error, KeyError) and error.args else error).split(" (")[0]
    return CacheDamaged(
        f"{path}: {what} cannot be read ({reason}): the file is damaged; rebuild it with `spp-scl extract --force`"
    )


# What h5py raises for a file whose metadata is damaged (object headers, heaps, B-trees, string encodings): an
# object that cannot be opened is a KeyError, a link that cannot be followed a RuntimeError, a read an OSError, a
# damaged string a UnicodeDecodeError or TypeError, a damaged shape or type a ValueError.
H5_READ_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError, UnicodeDecodeError)


@contextmanager
def damage_as_error(path, what: str = "its layout"):
    """Inside it, h5py's errors on a damaged file are the one-line CacheDamaged naming the file; the tool's own
    errors (a missing split, say) pass as they are."""
    try:
        yield
    except ToolError:
        raise
    except H5_READ_ERRORS as error:
        raise damaged(path, what, error) from None


class CheckedDataset:
    """An h5py dataset whose failed reads name the file and the dataset (for arrays read from disk per batch)."""

    def __init__(self, dataset, path, name: str):
        self.dataset, self.path, self.name = dataset, path, name

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except OSError as error:
            raise damaged(self.path, self.name, error) from None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def shape(self):
        return self.dataset.shape

    @property
    def dtype(self):
        return self.dataset.dtype


def check_small_datasets(group, path, names=("ids", "labels", "text_lengths", "token_offsets")) -> None:
    """The cheap check at open: the small arrays of a split against their sha256 (a few KB to a few MB)."""
    for name in names:
        stored = group[name].attrs.get(DATASET_KEY)
        try:
            actual = dataset_sha256(group[name])
        except OSError as error:
            raise damaged(path, f"{group.name.lstrip('/')}/{name}", error) from None
        if stored is not None and actual != stored:
            raise CacheDamaged(
                f"{path}: {group.name.lstrip('/')}/{name} does not match its checksum: the file is damaged; "
                "rebuild it with `spp-scl extract --force`"
            )
