"""Writing files so that a full disk is one clear error and never a half-written file taken for a whole one.

`write_atomically` writes to `<name>.tmp` and renames: the file at `path` is whole or absent. When the disk is
full (or a quota is reached) the partial temporary file is removed and a StorageError names the file, the
bytes it needed and the space left.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from spp_scl.core.errors import StorageError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL


def free_bytes(path: Path) -> int | None:
    """Space left on the file system that holds `path` (or its closest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def mib(count: int | None) -> str:
    return "an unknown amount" if count is None else f"{count / 2**20:.1f} MiB"


def disk_full(path: Path, needed: int | None, kept: str = "") -> StorageError:
    """The one-line error for a write of `needed` bytes to `path` that did not fit."""
    return StorageError(
        f"disk full writing {path}: it needs {mib(needed)}, {mib(free_bytes(path))} free on that disk"
        + (f"; {kept}" if kept else "")
        + "; free space and rerun"
    )


def require_free_space(path: Path, needed: int, kept: str = "") -> None:
    """Refuse before writing when `needed` bytes clearly do not fit where `path` goes."""
    free = free_bytes(path)
    if free is not None and free < needed:
        raise disk_full(path, needed, kept)


def write_atomically(path: Path, data: bytes, kept: str = "") -> None:
    """`data` to `path` through `<path>.tmp` and a rename; on a full disk the partial file is removed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if is_disk_full(error):
            raise disk_full(path, len(data), kept) from None
        raise StorageError(f"cannot write {tmp}: {error.strerror or error}") from None
    os.replace(tmp, path)


def remove_quietly(path: Path) -> None:
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass
