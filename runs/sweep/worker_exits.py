"""What a sweep makes of the way its worker processes end, and of a storage server lost while they work.

`--jobs N` runs N worker processes; each ends with the status the command line gives its error
(runs/sweep/worker.py), or is killed. The sweep exits with the status that says what happened, never "bad
input" for what was not:
- a worker killed by a signal (kill -9, the out-of-memory killer): 128 + the signal (137 for SIGKILL), as a
  shell reports a killed command;
- a worker that crashed (Python's status 1 for an uncaught exception: a bug, its traceback above): 70;
- otherwise the most serious of the workers' own statuses (storage, refused, diverged, missing extra, bad input,
  interrupted).
A storage server lost while a sweep runs (PostgreSQL or MySQL stopped, Redis gone, the network down) is a
one-line StorageError (5) in whichever process meets it, instead of a driver's traceback: finished trials are
in the storage, and a rerun resumes once it is back.
"""

from __future__ import annotations

import logging
import signal
import sys
from contextlib import contextmanager

from spp_scl.core.errors import (
    EXIT_CRASH,
    EXIT_DIVERGED,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_MISSING_EXTRA,
    EXIT_REFUSED,
    EXIT_SIGNAL_BASE,
    EXIT_STORAGE,
    StorageError,
    ToolError,
)
from spp_scl.runs.sweep.storage import first_line
from spp_scl.runs.sweep.storage_url import read_storage_url

PYTHON_UNCAUGHT = 1  # the status of a Python process that ended on an uncaught exception (and of an orphaned worker)
SERIOUSNESS = (EXIT_CRASH, EXIT_STORAGE, EXIT_REFUSED, EXIT_DIVERGED, EXIT_MISSING_EXTRA, EXIT_INPUT, EXIT_INTERRUPTED)


class WorkersStopped(ToolError):
    """Worker processes of a sweep ended badly; the status is the most telling of theirs."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def workers_error(ends: list[tuple[str, int]]) -> WorkersStopped | None:
    """(name, exit code) of each worker process (a negative code: killed by that signal) -> the error to raise,
    None when every worker ended well."""
    failed = [(name, code) for name, code in ends if code != 0]
    if not failed:
        return None
    parts = [f"{name} {_how_it_ended(code)}" for name, code in failed]
    killed = [code for _, code in failed if code < 0]
    statuses = {code for _, code in failed}
    if killed:
        status = EXIT_SIGNAL_BASE - killed[0]
    elif PYTHON_UNCAUGHT in statuses or not statuses <= set(SERIOUSNESS):
        status = EXIT_CRASH
    else:
        status = next(code for code in SERIOUSNESS if code in statuses)
    return WorkersStopped(
        f"sweep workers stopped ({'; '.join(parts)}; their messages are above); finished trials are kept in the "
        "study and a rerun resumes",
        status,
    )


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}" + (" (kill -9, or the out-of-memory killer)" if -code == signal.SIGKILL else "")
    if code == PYTHON_UNCAUGHT:
        return "crashed (exit status 1: an unexpected error, its traceback is above)"
    return f"exit status {code}"


def is_storage_loss(error: BaseException) -> bool:
    """An error of the study's storage server or of the way to it (not of the data sent): Optuna's wrapping of
    SQLAlchemy's errors, SQLAlchemy's connection errors, Redis's."""
    from optuna.exceptions import StorageInternalError

    if isinstance(error, StorageInternalError):
        return True
    try:
        from sqlalchemy.exc import DBAPIError, DisconnectionError

        if isinstance(error, (DBAPIError, DisconnectionError)):
            return True
    except ImportError:
        pass
    try:
        from redis.exceptions import ConnectionError, TimeoutError

        if isinstance(error, (ConnectionError, TimeoutError)):
            return True
    except ImportError:
        pass
    return False


class FirstLineOnly(logging.Filter):
    """Optuna's warnings about its storage quote SQLAlchemy's errors whole (the SQL and its parameters, a dozen
    lines a warning): the first line says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        lines = record.getMessage().splitlines()
        record.msg, record.args = (lines[0] if lines else ""), None
        return True


def shorten_optuna_warnings() -> None:
    import optuna  # noqa: F401  (its logger gets its handler on import)

    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, FirstLineOnly) for f in handler.filters):
            handler.addFilter(FirstLineOnly())


@contextmanager
def storage_loss_as_error(storage_url: str | None):
    """Inside it, a lost storage server is a one-line StorageError naming the storage (its password hidden)."""
    if storage_url is not None:
        shorten_optuna_warnings()
    try:
        yield
    except Exception as error:
        if storage_url is None or not is_storage_loss(error):
            raise
        url = read_storage_url(storage_url)
        raise StorageError(
            f"lost the study's storage {url.shown} ({first_line(error, url)}); finished trials are kept in it: "
            "rerun when it is back to resume"
        ) from None


def guarded_worker_process(settings, parent_pid: int, log_level: int) -> None:
    """runs/sweep/worker.py's worker_process, with a lost storage server as one line and status 5."""
    from spp_scl.runs.sweep.worker import worker_process

    try:
        with storage_loss_as_error(settings.storage_url):
            worker_process(settings, parent_pid, log_level)
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
