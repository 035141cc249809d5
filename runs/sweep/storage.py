"""Where a sweep's Optuna study lives: a journal file in the sweep folder (the default), a journal file elsewhere
(a shared file system), PostgreSQL / MySQL (Optuna's RDB storage) or Redis (Optuna's journal on Redis).

Every storage gets a heartbeat, so that a trial whose worker died (kill -9, a lost machine) is seen as stale and
retried. Optuna's RDB storage has one built in (`heartbeat_interval`, `grace_period`, a stale-trial callback);
its JournalStorage has none in Optuna 5, so `HeartbeatJournalStorage` adds Optuna's heartbeat interface to it:
each running trial's worker writes the time into a system attribute every interval, and `fail_stale_trials`
(Optuna's own) then works the same on both.

A URL that cannot be used (unknown form, missing driver, no server, a damaged journal file) is one line naming
the URL (password hidden, runs/sweep/storage_url.py) and the cause: `InputError`. The journal file's lock is
runs/sweep/journal_lock.py's, which a holder's death cannot turn into a wait for ever.
"""

from __future__ import annotations

import json
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from spp_scl.core.errors import InputError
from spp_scl.runs.sweep.journal_lock import MIN_GRACE, JournalLock
from spp_scl.runs.sweep.optuna_adapter import BaseHeartbeat, check_redis_connection, trial_id
from spp_scl.runs.sweep.storage_url import StorageUrl, read_storage_url, scrub

JOURNAL_NAME = "optuna.journal"
HEARTBEAT_KEY = "spp_scl:heartbeat"  # trial system attribute: the time.time() of the worker's last sign of life
RDB_SCHEMES = {
    "postgresql": "postgresql+psycopg2",
    "postgres": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "sqlite": "sqlite",
}
DRIVERS = {"postgresql": "psycopg2-binary", "mysql": "PyMySQL", "redis": "redis"}
# Optuna 5's journal operations (JournalOperation, 0-10; pinned optuna>=5,<6): another code is refused by line,
# as Optuna's replay would stop on it with a bare AssertionError.
JOURNAL_OP_CODES = range(11)


@dataclass
class StudyStorage:
    storage: optuna.storages.BaseStorage
    shown: str  # the URL with its password hidden, for messages and the summary
    dashboard: str  # what to give `optuna-dashboard`
    url: StorageUrl | None = None  # a server's URL: what scrubs its password from driver messages


def hide_password(url: str) -> str:
    return read_storage_url(url).shown


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's JournalStorage with Optuna's heartbeat: the time goes into a system attribute of the trial.

    The times come from the workers' clocks; on several machines they must agree to well within the grace
    period (NTP does that). A running trial that never beat (its worker died before the first beat) counts
    from its start time."""

    def __init__(
        self, backend, heartbeat_interval: int, grace_period: int, stale_callback: Callable | None = None
    ) -> None:
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_KEY)
            if beat is None and trial.datetime_start is not None:
                beat = trial.datetime_start.timestamp()
            if beat is not None and now - beat > self.grace_period:
                stale.append(trial_id(trial))
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.stale_callback


def check_journal_file(path: Path, lock: JournalLock) -> None:
    """Refuse a journal file with a line that is not a journal record (the file is left as it is: finished
    trials are also in results.jsonl, and moving the journal away lets a rerun rebuild the study from it).
    A last line cut short (a writer killed mid-write) is dropped under the journal's own lock first, so the
    next record does not glue onto it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    lock.acquire()
    try:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with path.open("r+b") as handle:
                handle.truncate(cut)
            data = data[:cut]
    finally:
        lock.release()
    for number, line in enumerate(data.splitlines(), 1):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if isinstance(record, dict) and "op_code" in record and record["op_code"] not in JOURNAL_OP_CODES:
            raise InputError(
                f"{path}: line {number} is a journal record of an unknown kind (op_code {record['op_code']!r}: "
                f"another Optuna version, or damage); nothing was changed. Finished trials are also in "
                f"results.jsonl beside it: move the journal away and rerun to rebuild the study from them"
            )
        if not isinstance(record, dict) or "op_code" not in record:
            raise InputError(
                f"{path}: line {number} is not an Optuna journal record (the file is damaged); nothing was "
                f"changed. Finished trials are also in results.jsonl beside it: move the journal away and rerun "
                f"to rebuild the study from them"
            )


def open_storage(url: str | None, folder: Path, heartbeat: int, stale_callback: Callable | None = None) -> StudyStorage:
    """The storage named by `url` (None: `folder/optuna.journal`), with a heartbeat every `heartbeat` seconds and
    a trial stale after 4 heartbeats without a sign of life. A journal's lock left by a dead holder is removed
    after `heartbeat` seconds unchanged (at least 10)."""
    grace = 4 * heartbeat
    if url is None or url.startswith("journal:"):
        path = folder / JOURNAL_NAME if url is None else Path(url[len("journal:") :]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = JournalLock(path, grace=max(float(heartbeat), MIN_GRACE))
        check_journal_file(path, lock)
        try:
            backend = JournalFileBackend(lock.target, lock_obj=lock)
            storage = HeartbeatJournalStorage(backend, heartbeat, grace, stale_callback)
        except (ValueError, KeyError, TypeError, AssertionError) as error:  # a record Optuna cannot replay
            raise InputError(f"{path}: the journal cannot be replayed ({error!r}); nothing was changed") from None
        return StudyStorage(storage, f"journal:{path}", str(path))
    parsed = read_storage_url(url)
    shown, url = parsed.shown, parsed.for_driver
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    base_scheme = scheme.split("+", 1)[0]
    if base_scheme in ("redis", "rediss", "unix"):
        return _redis_storage(parsed, heartbeat, grace, stale_callback)
    if base_scheme not in RDB_SCHEMES:
        raise InputError(
            f"--storage {shown}: not a storage URL; use postgresql://USER:PASSWORD@HOST:PORT/DB, "
            f"mysql://USER:PASSWORD@HOST:PORT/DB, redis://HOST:PORT/0, or journal:PATH (a journal file)"
        )
    if scheme == base_scheme:  # the drivers of the `sweeps` extra, not SQLAlchemy's defaults (psycopg 3, MySQLdb)
        url = RDB_SCHEMES[base_scheme] + url[len(scheme) :]
    engine_kwargs = {"pool_pre_ping": True}
    if base_scheme in ("postgresql", "postgres", "mysql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        storage = _rdb_storage(url, engine_kwargs, heartbeat, grace, stale_callback)
    except ImportError as error:
        driver = DRIVERS.get(RDB_SCHEMES.get(base_scheme, "").split("+")[0], "the database driver")
        raise InputError(
            f"--storage {shown}: the driver is not installed ({driver}): pip install 'spp-scl[sweeps-db]' ({error})"
        ) from None
    except Exception as error:  # SQLAlchemy's OperationalError, ArgumentError...: no server, wrong URL
        raise InputError(f"--storage {shown}: cannot open the database: {first_line(error, parsed)}") from None
    return StudyStorage(storage, shown, shown, parsed)  # no password in the dashboard command of the summary


def _rdb_storage(url: str, engine_kwargs: dict, heartbeat: int, grace: int, stale_callback):
    """Optuna's RDB storage behind its cache layer (the object the study itself would use). Workers that start
    together on an empty database all create Optuna's tables; the losers of that race try again."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeat_interval is marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=stale_callback,
                )
            return optuna.storages.get_storage(storage)
        except (IntegrityError, ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("not reached")


def _redis_storage(parsed: StorageUrl, heartbeat: int, grace: int, stale_callback) -> StudyStorage:
    url, shown = parsed.for_driver, parsed.shown
    try:
        import redis
        from optuna.storages.journal import JournalRedisBackend
    except ImportError:
        raise InputError(
            f"--storage {shown}: the redis client is not installed: pip install 'spp-scl[sweeps-db]'"
        ) from None
    try:
        with warnings.catch_warnings():  # the Redis journal is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            backend = JournalRedisBackend(url)
        check_redis_connection(backend)
        storage = HeartbeatJournalStorage(backend, heartbeat, grace, stale_callback)
    except (redis.exceptions.RedisError, ValueError) as error:
        raise InputError(f"--storage {shown}: cannot use Redis: {first_line(error, parsed)}") from None
    return StudyStorage(storage, shown, shown, parsed)  # no password in the dashboard command of the summary


def first_line(error: BaseException, url: StorageUrl | None = None) -> str:
    """The first line of a driver's error (SQLAlchemy's or Optuna's wrapping unwrapped), its password scrubbed."""
    cause = getattr(error, "orig", None) or error.__cause__ or error  # SQLAlchemy and Optuna wrap the driver's error
    cause = getattr(cause, "orig", None) or cause
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    line = lines[0] if lines else type(cause).__name__
    return scrub(line, url) if url is not None else line
