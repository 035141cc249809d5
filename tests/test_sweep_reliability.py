"""Sweeps that cannot hang, and exit statuses that say what happened: a journal lock left by a process killed
inside it is removed and the sweep resumes (a relative --out included); a lock that cannot be had is a one-line
error naming it; a killed worker is not "bad input"; a PostgreSQL server lost mid-sweep is one line and status
5; a password is never shown, even one with an unescaped @; a damaged or unknown journal record is named."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.core.errors import EXIT_CRASH, EXIT_INPUT, EXIT_STORAGE, EXIT_WORKER_KILLED, InputError, StorageError
from spp_scl.runs.sweep.journal_lock import JournalLock
from spp_scl.runs.sweep.storage import open_storage
from spp_scl.runs.sweep.worker_exits import workers_error
from tests.test_sweep_parent_death import _alive, _children, _wait_until
from tests.test_sweep_study import _free_port, _postgres_program

AXES = ["tau=0.05,0.1", "theta=0.5,0.8", "lambda=3,5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
PASSWORD = "p@ss/w0rd"  # as users paste it: an @ and a / that a URL would need escaped


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return write_synthetic_cache(
        tmp_path_factory.mktemp("reliability") / "cache.h5",
        {"train": 64, "dev": 32, "test": 32},
        layers=2,
        dim=16,
        map_shape=(8, 2, 2),
        mean_tokens=6,
        signal=0.8,
        seed=2,
    )


def sweep_command(cache: Path, out: str, *extra: str, epochs: int = 3) -> list[str]:
    axes = [part for axis in AXES for part in ("--axis", axis)]
    return [
        sys.executable, "-m", "spp_scl", "sweep", "--cache", str(cache), "--preset", "mvsa-single", *axes,
        "--set", f"epochs={epochs}", "--set", "batch_size=16", "--heartbeat", "1", "--out", out, *extra,
    ]  # fmt: skip


def test_a_lock_left_by_a_dead_holder_is_removed_and_a_held_one_bounds_the_wait(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweep").mkdir()
    journal = Path("sweep") / "optuna.journal"  # relative, as the README's default --out
    # What Optuna's own lock leaves when its holder is killed inside it: a link to the path as given, which
    # resolves against the link's folder (sweep/sweep/optuna.journal) and so points nowhere.
    os.symlink("sweep/optuna.journal", "sweep/optuna.journal.lock")
    lock = JournalLock(journal, grace=0.5, timeout=60)
    started = time.monotonic()
    assert lock.acquire()
    assert time.monotonic() - started < 30
    assert os.readlink(lock.path) == str(tmp_path / "sweep" / "optuna.journal")  # absolute: it points somewhere
    # A lock that is held: a waiter gives up after its timeout, naming the lock and how to clear it.
    waiter = JournalLock(journal, grace=600, timeout=0.5)
    with pytest.raises(StorageError, match=r"journal lock .*sweep/optuna.journal.lock .*delete it \(rm '.*'\)"):
        waiter.acquire()
    lock.release()
    assert not os.path.lexists(lock.path)
    assert waiter.acquire()  # free again
    waiter.release()


def test_a_lock_taken_over_while_its_holder_was_stopped_is_left_to_the_new_holder(tmp_path):
    first, second = JournalLock(tmp_path / "j", grace=0.2), JournalLock(tmp_path / "j", grace=0.2)
    first.acquire()
    time.sleep(0.3)
    second.acquire()  # took the first one's lock for a dead holder's
    first.release()  # must not remove the second's
    assert os.path.lexists(second.path)
    second.release()
    assert not os.path.lexists(second.path)


@pytest.mark.slow
def test_a_sweep_killed_inside_the_journal_lock_resumes_when_run_again(cache, tmp_path):
    """kill -9 of the sweep and its workers, with the lock left as a holder killed inside it leaves it, and a
    relative --out: the rerun removes the lock and finishes the grid instead of spinning for ever."""
    command = sweep_command(cache, "sweep", "--jobs", "2")
    sweep = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        started = _wait_until(lambda: len(list(tmp_path.glob("sweep/trials/*/config.json"))) >= 2, 300)
        assert started and sweep.poll() is None, "the sweep did not start two trials"
        workers = _children(sweep.pid)
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=30)
        assert _wait_until(lambda: not any(_alive(pid) for pid in workers), 60)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    lock = tmp_path / "sweep" / "optuna.journal.lock"
    if not os.path.lexists(lock):
        os.symlink("sweep/optuna.journal", lock)
    rerun = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr
    assert "removed the journal lock" in rerun.stderr
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert summary["study"]["trials"]["complete"] == 8 and len(summary["points"]) == 8


def test_the_sweep_exit_status_says_how_its_workers_ended():
    assert workers_error([("sweep-worker-0", 0), ("sweep-worker-1", 0)]) is None
    killed = workers_error([("sweep-worker-0", 0), ("sweep-worker-1", -signal.SIGKILL)])
    assert killed.exit_code == EXIT_WORKER_KILLED == 137
    assert "sweep-worker-1 was killed by SIGKILL" in str(killed)
    assert workers_error([("w", -signal.SIGTERM)]).exit_code == 128 + signal.SIGTERM
    assert workers_error([("w", 1)]).exit_code == EXIT_CRASH  # an uncaught exception: a bug, not bad input
    assert workers_error([("w", EXIT_INPUT), ("v", EXIT_STORAGE)]).exit_code == EXIT_STORAGE
    assert workers_error([("w", EXIT_INPUT)]).exit_code == EXIT_INPUT


@pytest.mark.slow
def test_a_worker_killed_with_kill_9_makes_the_sweep_exit_137_not_bad_input(cache, tmp_path):
    sweep = subprocess.Popen(
        sweep_command(cache, str(tmp_path / "sweep"), "--jobs", "2", epochs=20),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = _wait_until(lambda: len(list(tmp_path.glob("sweep/trials/*/config.json"))) >= 2, 300)
        assert started and sweep.poll() is None, "the sweep did not start two trials"
        workers = [pid for pid in _children(sweep.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2  # not multiprocessing's resource tracker, also a child
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = sweep.communicate(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == 137, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: sweep workers stopped (sweep-worker-") and "was killed by SIGKILL" in last


def test_a_password_with_an_unescaped_at_is_never_shown(tmp_path):
    url = f"postgresql://someone:{PASSWORD}@127.0.0.1:1/sweeps"
    with pytest.raises(InputError) as raised:
        open_storage(url, tmp_path, 5)
    message = str(raised.value)
    assert message.startswith("--storage postgresql://someone:***@127.0.0.1:1/sweeps: cannot open the database")
    assert "127.0.0.1" in message and not any(part in message for part in ("p@ss", "ss/w0rd", "w0rd")), message
    with pytest.raises(InputError) as raised:
        open_storage(f"redis://:{PASSWORD}@127.0.0.1:1/0", tmp_path, 5)
    assert "redis://:***@127.0.0.1:1/0" in str(raised.value) and "w0rd" not in str(raised.value)
    with pytest.raises(InputError) as raised:
        open_storage(f"postgresql://someone@127.0.0.1:1/sweeps?password={PASSWORD}", tmp_path, 5)
    assert "password=***" in str(raised.value) and "w0rd" not in str(raised.value)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ('{"op_code": 99, "worker_id": "w"}', r"line 2 is a journal record of an unknown kind \(op_code 99"),
        ('{"op_code": "x", "worker_id": "w"}', r"line 2 is a journal record of an unknown kind \(op_code 'x'"),
        ('{"op_code": 0, "worker_id": "w", "study_name": "t", "directions": 5}', r"the journal cannot be replayed"),
    ],
)
def test_an_unknown_or_impossible_journal_record_is_a_one_line_error(tmp_path, record, message):
    journal = tmp_path / "optuna.journal"
    journal.write_text('{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [2]}\n' + record + "\n")
    before = journal.read_bytes()
    with pytest.raises(InputError, match=message) as raised:
        open_storage(None, tmp_path, 5)
    assert "\n" not in str(raised.value) and journal.read_bytes() == before


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--axis", "tau=-1,0.1"], "--axis temperature: the value -1.0: temperature must be > 0"),
        (["--axis", "lr=-0.1"], "--axis lr: the value -0.1: lr must be a finite number >= 0"),
        (["--set", "lr=nan"], "lr must be a finite number >= 0, got nan"),
        (["--axis", "embed_dim=32,100000000"], "embed_dim must be at most 16384"),
    ],
)
def test_a_bad_swept_or_set_value_is_refused_before_anything_starts(cache, tmp_path, option, message):
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "spp_scl", "sweep", "--cache", str(cache), "--preset", "mvsa-single",
               "--axis", "theta=0.5,0.8", *option, "--out", str(out)]  # fmt: skip
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.fixture
def stoppable_postgres():
    """A PostgreSQL server as tests/test_sweep_study.py starts one, and a way to stop it mid-test (the server
    trusts local connections, so the password in the URL is accepted as any would be)."""
    initdb, pg_ctl = _postgres_program("initdb"), _postgres_program("pg_ctl")
    if not (initdb and pg_ctl):
        message = "PostgreSQL is not installed (apt-get install -y postgresql; .ci/run installs it)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="spp-scl-postgres-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    quiet = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run([*as_postgres, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"], **quiet)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*as_postgres, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-o", options, "start"], **quiet
    )

    def stop() -> None:
        subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)

    try:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE sweeps")
        connection.close()
        yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/sweeps", stop
    finally:
        stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.db
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_database_server_lost_mid_sweep_is_one_line_and_status_5(cache, stoppable_postgres, tmp_path, jobs):
    url, stop_server = stoppable_postgres
    out = tmp_path / "sweep"
    sweep = subprocess.Popen(
        sweep_command(cache, str(out), "--jobs", jobs, "--storage", url, epochs=30),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        finished_one = _wait_until(
            lambda: (out / "results.jsonl").exists() and (out / "results.jsonl").stat().st_size, 300
        )
        assert finished_one and sweep.poll() is None, "no trial finished before the server was stopped"
        stop_server()
        _, stderr = sweep.communicate(timeout=300)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    assert sweep.returncode == EXIT_STORAGE, stderr
    assert "Traceback" not in stderr and "[SQL:" not in stderr, stderr
    assert "error: lost the study's storage postgresql://postgres:***@127.0.0.1:" in stderr
    shown = stderr + (out / "study.json").read_text()
    assert not any(part in shown for part in ("p@ss", "w0rd", "p%40ss")), shown
