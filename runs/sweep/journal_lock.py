"""The lock around every write to a sweep's journal file, made unable to hang.

It is Optuna's symlink lock (`<journal>.lock`, a symbolic link created atomically, safe on network file systems
and the lock Optuna's own writers of the journal take) with three changes:
- The link points at the journal's absolute path. Optuna links to the path as given, and a symlink's relative
  target resolves against the link's own folder: with a relative `--out` the link pointed nowhere, Optuna's
  stale-lock check (the target's mtime) failed, and after a holder died inside the lock (kill -9 of a worker
  or of the sweep) every later run spun a core for ever.
- A lock is judged stale by the link itself (lstat: a dangling link left by an earlier version counts too),
  when it has stayed the same link for `grace` seconds of this process's monotonic clock. A live holder keeps
  it for one append (milliseconds); each new holder makes a new link. Comparing with one's own clock, never
  with the file's time, means machines sharing the folder need not agree on the time.
- The wait is bounded: past `timeout` seconds it is a one-line StorageError naming the lock and how to clear it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

from spp_scl.core.errors import StorageError

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"  # Optuna's name for the journal's lock: every writer of one journal must use the same
MIN_GRACE = 10.0  # seconds a lock may stay unchanged before it is taken for a dead holder's
WARN_AFTER = 10.0  # seconds of waiting before the wait is said


class JournalLock:
    """Exclusive access to one journal file; `acquire` / `release`, as Optuna's JournalFileBackend expects."""

    def __init__(self, journal: str | Path, grace: float = 30.0, timeout: float | None = None) -> None:
        self.target = os.path.abspath(journal)
        self.path = self.target + LOCK_SUFFIX
        self.grace = grace
        self.timeout = 4 * grace if timeout is None else timeout
        self._held = None  # the lstat identity of the link this process made

    def acquire(self) -> bool:
        started = time.monotonic()
        seen, since, warned, delay = None, started, False, 0.001
        while True:
            try:
                os.symlink(self.target, self.path)
                self._held = _identity(self.path)
                return True
            except FileExistsError:
                pass
            except OSError as error:
                raise StorageError(f"cannot create the journal lock {self.path}: {error.strerror}") from None
            now = time.monotonic()
            current = _identity(self.path)
            if current is None:  # released between the two calls: try again at once
                continue
            if current != seen:
                seen, since = current, now
            elif now - since > self.grace:
                self._remove_stale(current, now - since)
                seen, delay = None, 0.001
                continue
            if now - started > self.timeout:
                raise StorageError(
                    f"waited {now - started:.0f} s for the journal lock {self.path} (other processes kept taking "
                    f"it, or it cannot be removed); if no worker of this sweep is running, delete it "
                    f"(rm '{self.path}') and rerun: finished trials are kept"
                )
            if not warned and now - started > WARN_AFTER:
                warned = True
                logger.warning(
                    f"waiting for the journal lock {self.path}; one left by a process that died is removed after "
                    f"{self.grace:.0f} s unchanged"
                )
            time.sleep(delay)
            delay = min(2 * delay, 0.25)

    def release(self) -> None:
        """Remove the link this process made; one that is no longer it (taken for stale and replaced while
        this process was stopped) is left to its new holder."""
        held, self._held = self._held, None
        if held is None or _identity(self.path) != held:
            logger.warning(f"the journal lock {self.path} was no longer this process's when it was released")
            return
        _remove(self.path)

    def _remove_stale(self, identity: tuple, held_for: float) -> None:
        if _identity(self.path) != identity:  # a new holder took it meanwhile
            return
        _remove(self.path)
        logger.warning(
            f"removed the journal lock {self.path}: unchanged for {held_for:.0f} s, left by a process that "
            "ended inside it (kill -9, a lost machine)"
        )


def _identity(path: str) -> tuple | None:
    """What tells one link from the next made at the same path (None when there is none)."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_ctime_ns, status.st_dev


def _remove(path: str) -> None:
    """Renamed away first, as Optuna does, so that two processes removing one stale lock remove it once."""
    moved = f"{path}.{uuid.uuid4().hex}.removed"
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return  # another waiter removed it first
    except OSError as error:
        raise StorageError(f"cannot remove the journal lock {path}: {error.strerror}") from None
    os.unlink(moved)
