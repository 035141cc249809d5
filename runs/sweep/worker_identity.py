"""Which process runs a trial, written into the trial, so that a worker on the same machine can tell at once
that the owner of a running trial is gone (kill -9) instead of waiting for its heartbeat to go stale.

A process is named by host, boot, pid and the pid's start time: after a reboot or a pid reused by another
process, the record no longer matches, so a live stranger is never taken for the owner. Where the start time
cannot be read (not Linux), `owner_is_gone` answers False and the heartbeat alone decides.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None if there is no such
    process or only its zombie (killed, not yet reaped)."""
    try:
        fields = (
            Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        )  # after the name, which may hold spaces
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def this_process() -> dict:
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def owner_is_gone(owner: dict | None) -> bool:
    """True only when the owner ran on this machine since its last boot and that process no longer exists."""
    if not owner or owner.get("boot") is None or owner.get("started") is None:
        return False
    if owner.get("host") != socket.gethostname() or owner.get("boot") != _boot_id():
        return False
    return _start_time(int(owner["pid"])) != owner["started"]
