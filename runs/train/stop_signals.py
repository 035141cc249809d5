"""Ctrl-C and SIGTERM stop `spp-scl train` between two optimiser steps, never inside one.

Inside `stop_on_signals()` (the train verb wraps its training in it) SIGINT and SIGTERM only set a flag; the
trainer looks at it after each step (`stop_requested()`) and stops there, so what it saves (runs/train/resume.py)
is never half-updated. A second Ctrl-C stops at once, for a step that takes too long. Outside the context (a
library caller, a sweep's worker) the signals keep Python's default behaviour.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_received: list[int] = []
_active = False


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM; the message says whether a rerun resumes or restarts."""


def stop_requested() -> bool:
    return bool(_received)


def resumable_stops() -> bool:
    """Whether a stop is handled between steps now (so that the trainer keeps a state to resume from)."""
    return _active


@contextmanager
def stop_on_signals():
    """SIGINT and SIGTERM set the flag instead of raising where they land; restored on exit. A no-op outside the
    main thread, where Python cannot install handlers."""
    global _active
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(number, frame):
        if number == signal.SIGINT and _received:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        _received.append(number)

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    _received.clear()
    _active = True
    try:
        yield
    finally:
        _active = False
        _received.clear()
        for number, old in previous.items():
            signal.signal(number, old)
