"""One writer per output at a time: an OS lock on a lock file that names its holder.

The lock is `fcntl.flock` on the lock file: the kernel releases it when the holder exits, however it exits (kill -9
included), so a lock file left behind never blocks a later run. The file holds the holder's pid, host and start
time, which a refused run names. Extraction takes it on its output (extract/output_lock.py), and `train` on its
run folder (runs/train/run_lock.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from spp_scl.core.errors import Refused


class Locked(Refused):
    """Another process holds the lock."""


def read_holder(path: Path) -> dict | None:
    """{"pid", "host", "started"} from a lock file, or None when there is none or it cannot be read."""
    try:
        info = json.loads(Path(path).read_bytes() or b"{}")
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and {"pid", "host", "started"} <= info.keys() else None


def describe_holder(info: dict | None) -> str:
    if info is None:
        return "a process that is just starting"
    return f"pid {info['pid']} on {info['host']}, started {info['started']}"


def holder_alive(info: dict | None) -> bool:
    """Whether the holder a lock file names is a live process on this host (a kill -9 leaves the file behind)."""
    if info is None or info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


class ExclusiveLock:
    """Held from `acquire` to `release` (or as a context manager); `acquire` raises Locked at once when another
    process (or another open of the file in this one) holds it, instead of waiting. `refusal(holder, path)` gives
    the message of that refusal."""

    def __init__(self, path: str | Path, refusal):
        self.path = Path(path)
        self.refusal = refusal
        self.fd: int | None = None

    def acquire(self) -> ExclusiveLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
                except (OSError, ValueError):
                    holder = None
                os.close(fd)
                holder = holder if isinstance(holder, dict) and {"pid", "host", "started"} <= holder.keys() else None
                raise Locked(self.refusal(describe_holder(holder), self.path)) from None
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

    def __enter__(self) -> ExclusiveLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
