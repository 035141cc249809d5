"""Worker processes that end when the process that started them ends, however it ends (kill -9 included).

A pool's workers otherwise outlive a killed parent: nothing tells them, and each holds its copy of the cache
(about 530 MB on MVSA-Single) for ever. Two mechanisms, called from the worker at start:
- Linux: prctl(PR_SET_PDEATHSIG, SIGKILL) through ctypes, so the kernel kills the worker the moment its parent
  goes. (The "parent" is the thread that started the worker: the pool starts its workers from the thread that
  submits, which waits in the pool until the work is done.)
- everywhere: a daemon thread that checks once a second whether the worker was handed to another parent.
The parent's pid is passed in rather than read, so a parent that died before the worker got this far is seen.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
CHECK_SECONDS = 1.0


def _kernel_kills_on_parent_death() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int) -> None:
    while True:
        time.sleep(CHECK_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(1)


def exit_with_parent(parent_pid: int) -> None:
    """Make this process end when `parent_pid` (its parent) ends."""
    _kernel_kills_on_parent_death()
    if os.getppid() != parent_pid:  # the parent was already gone before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True, name="exit-with-parent").start()
