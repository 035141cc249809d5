"""One extraction per output at a time: an OS lock on `<cache>.lock` that names its holder.

Two extractions to the same cache would share `<cache>.parts` and `<cache>.tmp`, and the second one's writes
would empty or mix the first one's. The lock is `fcntl.flock` on a file beside the cache: the kernel releases
it when the holder exits, however it exits (kill -9 included), so a lock file left behind never blocks a later
run. The file holds the holder's pid, host and start time, which a refused run names.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from spp_scl.core.errors import Refused


class OutputLocked(Refused):
    """Another process is writing the same cache."""


def lock_path(cache: Path) -> Path:
    return cache.with_name(cache.name + ".lock")


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that is just starting"


class OutputLock:
    """Held from `acquire` to `release` (or as a context manager); `acquire` raises OutputLocked at once when
    another process holds it, instead of waiting."""

    def __init__(self, cache: str | Path):
        self.cache = Path(cache)
        self.path = lock_path(self.cache)
        self.fd: int | None = None

    def acquire(self) -> OutputLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise OutputLocked(
                    f"{self.cache} is being written by another extraction ({holder}; lock {self.path}): wait for "
                    "it to finish, or stop it and rerun (its finished shards are kept)"
                ) from None
            # The previous holder may have removed the file between our open and our lock: we would then hold a
            # lock that no one else can see. Start again on the file that is there now.
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # removed while still locked, so no one takes a file about to vanish
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
