"""The kinds of expected failure, each with the exit status the `spp-scl` command gives it.

Library code raises these (or a subclass) with a one-line message that names the file and the field; the
command line prints `error: <message>` and exits with the kind's status. Anything else is a bug and keeps its
traceback. The statuses are listed in `spp-scl --help`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1  # predict: some pairs got an error row, the others were predicted
EXIT_USAGE = 2  # bad command-line arguments (argparse's own status)
EXIT_INPUT = 3  # a data file, cache, run folder or config that cannot be used as it is
EXIT_REFUSED = 4  # refused to go on: another process holds the output, settings or encoders differ
EXIT_STORAGE = 5  # the disk is full or a file cannot be written
EXIT_DIVERGED = 6  # training produced non-finite losses or weights
EXIT_MISSING_EXTRA = 7  # an optional dependency of this verb is not installed (the message names the extra)
EXIT_CRASH = 70  # an unexpected error, a bug: the traceback is printed (never 1, which predict gives partial results)
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_SIGNAL_BASE = 128  # a sweep whose worker process was killed by signal N exits 128 + N, as a shell reports it
EXIT_WORKER_KILLED = EXIT_SIGNAL_BASE + 9  # kill -9, or the out-of-memory killer

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_PARTIAL: "partial: predict wrote an error row for some pairs and predicted the others",
    EXIT_USAGE: "bad command-line arguments",
    EXIT_INPUT: "bad input: a data file, cache, run folder or config that cannot be used (the message names it)",
    EXIT_REFUSED: "refused: output locked by another process, or settings / encoders that differ from the cache's",
    EXIT_STORAGE: "storage: disk full or a file that cannot be written (finished work is kept)",
    EXIT_DIVERGED: "training diverged: non-finite loss or weights (nothing is saved or selected)",
    EXIT_MISSING_EXTRA: "an optional dependency is missing: the message names the extra to install",
    EXIT_CRASH: "an unexpected error (a bug): the traceback is printed above the error line",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C; SIGTERM in train); a rerun resumes (train: when its message says so)",
    EXIT_WORKER_KILLED: "a sweep worker was killed (kill -9 or out of memory; 128 + N for signal N); a rerun resumes",
}


class ToolError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_code = EXIT_INPUT


class InputError(ToolError, ValueError):
    """A file, cache, run folder or value that cannot be used as it is."""

    exit_code = EXIT_INPUT


class Refused(ToolError):
    """The tool refuses to go on, to protect finished work (a lock, a fingerprint or encoder mismatch)."""

    exit_code = EXIT_REFUSED


class StorageError(ToolError, OSError):
    """A write failed (disk full, permissions); what was finished before is kept."""

    exit_code = EXIT_STORAGE


class Diverged(ToolError):
    """Training produced a non-finite loss or non-finite weights."""

    exit_code = EXIT_DIVERGED


class MissingExtra(ToolError, ImportError):
    """What was asked needs an optional dependency that is not installed (spp_scl/core/extras.py)."""

    exit_code = EXIT_MISSING_EXTRA
