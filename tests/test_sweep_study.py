"""Sweeps on an Optuna study: several workers on one study train each (point, seed) once; a worker killed with
kill -9 and started again ends with the summary of an uninterrupted sweep; three workers on a real PostgreSQL
server; pruning stops points that cannot learn at the first rung; bad storages, other settings and a damaged
journal are one-line errors (refusals: test_sweep_refusals.py)."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from spp_scl.core.errors import InputError
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.sweep.driver import run_sweep
from spp_scl.runs.sweep.grid import expand, parse_space
from spp_scl.runs.sweep.optuna_adapter import trial_id
from spp_scl.runs.sweep.storage import HEARTBEAT_KEY, open_storage
from spp_scl.runs.sweep.study import (
    DUPLICATE_KEY,
    OWNER_KEY,
    RETRY_KEY,
    SweepPlan,
    claim_waiting,
    open_study,
    recover_unfinished,
    retry_unfinished,
)
from spp_scl.runs.sweep.worker import Pruning
from spp_scl.runs.sweep.worker_identity import owner_is_gone, this_process
from spp_scl.runs.train.trainer import train

pytestmark = pytest.mark.slow  # end to end: processes, extractions or many epochs

AXES = ["tau=0.05,0.1", "theta=0.5,0.8", "lambda=3,5"]
EPOCHS = 3
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TRAINED = re.compile(r"^trial (\d+) .+ seed \d+: (pruned at epoch \d+, )?dev ", re.MULTILINE)


SIZES = {"train": 64, "dev": 32, "test": 32}
SETTINGS = dict(layers=2, dim=16, map_shape=(8, 2, 2), mean_tokens=6, signal=0.8)


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(SIZES, **SETTINGS, seed=2)


@pytest.fixture(scope="module")
def other_cache(synthetic_cache):
    return synthetic_cache(SIZES, **SETTINGS, seed=3)


def base_config(**changes):
    return resolve_config("mvsa-single", **{"epochs": EPOCHS, "batch_size": 16, **changes})


def plan_for(cache, axes=AXES, seeds=(42,), **settings) -> SweepPlan:
    base = settings.pop("base", None) or base_config()
    return SweepPlan(cache, base, parse_space(list(axes), base), list(seeds), **settings)


def sweep_command(cache, out, *extra) -> list[str]:
    axes = [part for axis in AXES for part in ("--axis", axis)]
    return [
        sys.executable, "-m", "spp_scl", "sweep", "--cache", str(cache), "--preset", "mvsa-single", *axes,
        "--set", f"epochs={EPOCHS}", "--set", "batch_size=16", "--heartbeat", "1", "--out", str(out), *extra,
    ]  # fmt: skip


def start(command) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)


def finish(process: subprocess.Popen) -> str:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    return stderr


def journal_trials(out: Path) -> list:
    name = json.loads((out / "study.json").read_text())["study"]
    storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def planned_keys(cache) -> set[str]:
    plan = plan_for(cache)
    return {trial.key(plan.base) for trial in expand(plan.space, plan.seeds)}


def summary_of(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    return {"points": summary["points"], "best": summary["best"]}


@pytest.fixture(scope="module")
def single_worker(cache, tmp_path_factory):
    """The grid swept by one uninterrupted worker: the reference the other ways of running must match."""
    out = tmp_path_factory.mktemp("single")
    finish(start(sweep_command(cache, out)))
    return out


def test_trainer_stops_when_on_epoch_asks_and_completes_the_run(cache, tmp_path):
    seen = []

    def on_epoch(epoch, dev):
        seen.append((epoch, set(dev) >= {"accuracy", "f1_weighted", "f1_macro"}))
        return epoch == 2

    result = train(cache, base_config(epochs=5), tmp_path, log=lambda *_: None, on_epoch=on_epoch)
    assert seen == [(1, True), (2, True)] and result.epochs_run == 2
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2
    assert json.loads((tmp_path / "metrics.json").read_text())["selected_epoch"] in (1, 2)


def test_a_dead_owner_is_told_from_a_live_one():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    record = {**this_process(), "pid": child.pid}
    record["started"] = int(Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    assert not owner_is_gone(record)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert owner_is_gone(record)
    assert not owner_is_gone({**record, "host": "another-machine"})  # there, only the heartbeat can tell
    assert not owner_is_gone(this_process())


def test_a_trial_whose_heartbeat_stopped_on_another_machine_is_retried_after_the_grace_period(cache, tmp_path):
    """Optuna's heartbeat on the journal storage: a worker elsewhere (its process cannot be looked up here) that
    stopped beating for longer than the grace period loses its trial to a retry; one that beats keeps it."""
    plan = plan_for(cache, axes=["theta=0.5,0.8"])
    storage = open_storage(None, tmp_path, 1, retry_unfinished).storage  # grace: 4 heartbeats
    study = open_study(plan, storage, plan.study_name(), None, None)
    silent, beating = claim_waiting(study), claim_waiting(study)
    for trial, last_beat in ((silent, time.time() - 10), (beating, time.time())):
        storage.set_trial_system_attr(trial_id(trial), OWNER_KEY, {**this_process(), "host": "elsewhere"})
        storage.set_trial_system_attr(trial_id(trial), HEARTBEAT_KEY, last_beat)
    assert recover_unfinished(study, grace=4) == [0]  # its owner is elsewhere: only the heartbeat tells
    trials = study.get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.FAIL, TrialState.RUNNING]
    assert trials[2].state == TrialState.WAITING and trials[2].user_attrs["key"] == trials[0].user_attrs["key"]
    assert trials[2].system_attrs[RETRY_KEY] == [0]


def test_two_workers_on_one_journal_study_train_each_point_once(cache, single_worker, tmp_path):
    first, second = start(sweep_command(cache, tmp_path)), start(sweep_command(cache, tmp_path))
    logs = [finish(first), finish(second)]
    trained = [set(map(int, (m.group(1) for m in TRAINED.finditer(log)))) for log in logs]
    trials = journal_trials(tmp_path)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["key"] for t in complete) == sorted(planned_keys(cache))  # the grid, each once
    assert not trained[0] & trained[1] and trained[0] | trained[1] == {t.number for t in complete}, trained
    assert summary_of(tmp_path) == summary_of(single_worker)
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 8


def test_a_worker_killed_mid_trial_and_restarted_ends_like_an_uninterrupted_one(cache, single_worker, tmp_path):
    # Groups asked for (the tiny cache fits in memory, where trials would train alone by default): a killed group's
    # trials are all retried.
    worker = start(sweep_command(cache, tmp_path, "--group-size", "8"))
    deadline, killed_mid_trial = time.time() + 300, False
    while time.time() < deadline and worker.poll() is None and not killed_mid_trial:
        time.sleep(0.05)
        if not (tmp_path / "study.json").exists():
            continue
        trials = journal_trials(tmp_path)
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
        if done >= 1 and running:
            worker.send_signal(signal.SIGKILL)
            killed_mid_trial = True
            claimed = sum(t.state == TrialState.RUNNING for t in trials)  # one, or a group's trials
    worker.communicate()
    assert killed_mid_trial, "the worker finished before it could be killed mid-trial"
    finished_before = sum(t.state == TrialState.COMPLETE for t in journal_trials(tmp_path))
    log = finish(start(sweep_command(cache, tmp_path, "--group-size", "8")))
    assert f"{finished_before} of 8 trials already in the study" in log
    assert re.search(r"trial \d+: its worker is gone; enqueued again", log)
    assert len(TRAINED.findall(log)) == 8 - finished_before  # nothing finished is trained again
    trials = journal_trials(tmp_path)
    assert sorted(t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE) == sorted(planned_keys(cache))
    assert summary_of(tmp_path) == summary_of(single_worker)
    # Every trial the killed worker held (a group of them) is retried once, and only those.
    assert json.loads((tmp_path / "summary.json").read_text())["study"]["trials"]["retries"] == claimed
    for name in ("sweep_tau_theta.png", "sweep_lambda.png", "sweep_seed_spread.png", "optuna_contour_tau_theta.png"):
        assert (tmp_path / name).stat().st_size > 5000 and f"![{name}]({name})" in (tmp_path / "summary.md").read_text()


def _postgres_program(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A PostgreSQL server from the Debian package in a temporary folder on a free local port (as the postgres
    user when the tests run as root), with an empty database; stopped and removed at the end."""
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
    try:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE sweeps")
        connection.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.db
def test_three_workers_on_postgresql_train_each_point_once(cache, single_worker, postgres_url, tmp_path):
    outs = [tmp_path / f"machine{i}" for i in range(3)]  # as if on three machines: no shared folder
    workers = [start(sweep_command(cache, out, "--storage", postgres_url)) for out in outs]
    logs = [finish(worker) for worker in workers]
    name = json.loads((outs[0] / "study.json").read_text())["study"]
    assert name == json.loads((single_worker / "study.json").read_text())["study"]  # named from settings only
    trials = optuna.load_study(study_name=name, storage=open_storage(postgres_url, tmp_path, 1).storage).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["key"] for t in complete) == sorted(planned_keys(cache))
    trained = [set(map(int, (m.group(1) for m in TRAINED.finditer(log)))) for log in logs]
    assert sum(map(len, trained)) == 8 and set().union(*trained) == {t.number for t in complete}, trained
    for out in outs:  # every worker waits for the study to finish and writes the whole summary
        assert summary_of(out) == summary_of(single_worker)


def test_a_pruned_grid_is_enqueued_in_a_seeded_random_order_of_points():
    shuffled = plan_for(Path("unused.h5"), seeds=(42, 43), shuffle=True, fingerprint="-").fixed_trials()
    in_axis_order = plan_for(Path("unused.h5"), seeds=(42, 43), fingerprint="-").fixed_trials()
    assert sorted(shuffled, key=str) == sorted(in_axis_order, key=str) and shuffled != in_axis_order
    assert [t.seed for t in shuffled] == [42, 43] * 8  # a point's seeds stay together
    assert shuffled == plan_for(Path("unused.h5"), seeds=(42, 43), shuffle=True, fingerprint="-").fixed_trials()


def test_points_that_cannot_learn_are_pruned_at_the_first_rung(cache, tmp_path):
    # Learnable points first, then lr = 0 (a shuffled order could put an lr = 0 point first, and successive
    # halving promotes the first trial to reach a rung: nothing to compare it with yet).
    plan = plan_for(cache, axes=["lr=0.01,0", "theta=0.5,0.8"])
    summary = run_sweep(
        plan, tmp_path, pruning=Pruning("successive-halving", min_epochs=1), heartbeat=1, log=lambda *_: None
    )
    assert sorted(p["name"] for p in summary["pruned"]) == ["lr=0 theta=0.5", "lr=0 theta=0.8"]
    assert all(p["epoch"] == 1 for p in summary["pruned"])
    assert [p["name"] for p in summary["points"]] == ["lr=0.01 theta=0.5", "lr=0.01 theta=0.8"]
    counts = summary["study"]["trials"]
    assert (counts["complete"], counts["pruned"], counts["fail"]) == (2, 2, 0)
    epochs = summary["study"]["epochs"]
    assert epochs["pruned"] == 2 and epochs["total"] == epochs["complete"] + 2
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(row["state"] for row in rows) == ["complete", "complete", "pruned", "pruned"]
    text = (tmp_path / "summary.md").read_text()
    assert "- lr=0 theta=0.5 seed 42: epoch 1" in text and "optuna_contour_tau_theta.png" not in text
    assert (tmp_path / "optuna_param_importances.png").stat().st_size > 5000
    assert (tmp_path / "optuna_epochs.png").stat().st_size > 5000


def test_a_key_enqueued_twice_is_trained_once(cache, tmp_path):
    plan = plan_for(cache, axes=["theta=0.5,0.8"])
    storage = open_storage(None, tmp_path, 1)
    study = open_study(plan, storage.storage, plan.study_name(), None, None)
    first = plan.fixed_trials()[0]
    study.enqueue_trial(  # as two workers creating the plan at the same moment would leave it
        plan.params(first.overrides),
        user_attrs={"key": first.key(plan.base), "name": first.name, "seed": first.seed, "overrides": {}},
    )
    summary = run_sweep(plan, tmp_path, heartbeat=1, log=lambda *_: None)
    trials = journal_trials(tmp_path)
    keys = [t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(keys) == sorted(t.key(plan.base) for t in plan.fixed_trials())
    assert [t.system_attrs.get(DUPLICATE_KEY) for t in trials if t.state == TrialState.FAIL] == [0]
    assert summary["study"]["trials"]["duplicates"] == 1 and summary["study"]["epochs"]["unfinished"] == 0


def test_random_and_tpe_train_the_asked_number_of_distinct_points(cache, tmp_path):
    base = base_config(epochs=1)
    drawn = run_sweep(plan_for(cache, base=base, sampler="random", points=3), tmp_path / "random", log=lambda *_: None)
    grid = {trial.name for trial in expand(plan_for(cache).space, [42])}
    assert len(drawn["points"]) == 3 and {p["name"] for p in drawn["points"]} <= grid
    tpe = run_sweep(
        plan_for(cache, base=base, seeds=(42, 43), sampler="tpe", points=3), tmp_path / "tpe", log=lambda *_: None
    )
    assert len(tpe["points"]) == 3 and all(p["seeds"] == 2 for p in tpe["points"])
    assert tpe["study"]["trials"]["complete"] == 6


def test_storage_urls_that_cannot_be_used_are_one_line_errors(cache, tmp_path):
    for url, cause in (
        ("postgresql://someone:secret@127.0.0.1:1/sweeps", "cannot open the database"),
        ("mysql://someone:secret@127.0.0.1:1/sweeps", "cannot open the database"),
        ("redis://:secret@127.0.0.1:1/0", "cannot use Redis"),
        ("ftp://someone:secret@host/sweeps", "not a storage URL"),
    ):
        with pytest.raises(InputError) as raised:
            open_storage(url, tmp_path, 5)
        message = str(raised.value)
        assert cause in message and "secret" not in message and "\n" not in message, message
    result = subprocess.run(
        [*sweep_command(cache, tmp_path / "out"), "--storage", "postgresql://someone:secret@127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert result.returncode == 3, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: --storage postgresql://someone:***@127.0.0.1:1/x: cannot open the database:")
    )
    assert not (tmp_path / "out" / "optuna.journal").exists()
