"""A sweep folder or study made from other settings, a worker of another version and a damaged journal are
refused with one line, and nothing of the finished work is lost (the study's own tests: test_sweep_study.py)."""

from __future__ import annotations

import shutil

import pytest

from spp_scl.core.errors import InputError, Refused
from spp_scl.heads.config import FIELDS_ADDED_AFTER_KEYS
from spp_scl.runs.sweep.driver import run_sweep
from spp_scl.runs.sweep.study import digest, jsonable
from spp_scl.runs.sweep.worker import WorkerSettings, open_worker_study
from tests.test_sweep_study import SETTINGS, SIZES, TRAINED, base_config, plan_for


@pytest.fixture(scope="module")
def cache(synthetic_cache):  # test_sweep_study's caches: the session builds each once
    return synthetic_cache(SIZES, **SETTINGS, seed=2)


@pytest.fixture(scope="module")
def other_cache(synthetic_cache):
    return synthetic_cache(SIZES, **SETTINGS, seed=3)


def test_a_study_of_another_cache_or_axes_is_refused_and_nothing_is_lost(cache, other_cache, tmp_path):
    base = base_config(epochs=1)
    quiet = {"heartbeat": 1, "log": lambda *_: None}
    run_sweep(plan_for(cache, ["theta=0.5,0.8"], base=base), tmp_path / "sweep", **quiet)
    kept = {name: (tmp_path / "sweep" / name).read_bytes() for name in ("results.jsonl", "summary.json")}
    with pytest.raises(Refused, match=r"holds the sweep of study .* \(another cache \(fingerprint"):
        run_sweep(plan_for(other_cache, ["theta=0.5,0.8"], base=base), tmp_path / "sweep", **quiet)
    with pytest.raises(Refused, match=r"axis theta: \[0.5, 0.8\] vs \[0.5, 0.9\]"):
        run_sweep(plan_for(cache, ["theta=0.5,0.9"], base=base), tmp_path / "sweep", **quiet)
    with pytest.raises(Refused, match=r"epochs: 1 vs 2"):
        run_sweep(plan_for(cache, ["theta=0.5,0.8"], base=base_config(epochs=2)), tmp_path / "sweep", **quiet)
    assert kept == {name: (tmp_path / "sweep" / name).read_bytes() for name in kept}
    shutil.copytree(tmp_path / "sweep", tmp_path / "moved")  # a sweep folder moved elsewhere is still the same sweep
    messages = []
    run_sweep(plan_for(cache, ["theta=0.5,0.8"], base=base), tmp_path / "moved", heartbeat=1, log=messages.append)
    assert "2 of 2 trials already in the study" in messages[0] and not TRAINED.search("\n".join(messages))
    # A shared storage holds many studies: a named study made from another cache is refused by its own record.
    shared = f"journal:{tmp_path / 'shared.journal'}"
    run_sweep(plan_for(cache, ["theta=0.5,0.8"], base=base), tmp_path / "a", shared, "mine", **quiet)
    with pytest.raises(Refused, match=r"the study mine was made from other settings \(another cache"):
        run_sweep(plan_for(other_cache, ["theta=0.5,0.8"], base=base), tmp_path / "b", shared, "mine", **quiet)


def test_a_worker_whose_code_makes_other_trials_is_refused(cache, tmp_path):
    """A worker process of another version (here: another base config) never touches the study."""
    plan = plan_for(cache, ["theta=0.5,0.8"], base=base_config(epochs=1))
    run_sweep(plan, tmp_path, heartbeat=1, log=lambda *_: None)
    before = (tmp_path / "optuna.journal").read_bytes()
    other = plan_for(cache, ["theta=0.5,0.8"], base=base_config(epochs=1, dropout=0.3))
    with pytest.raises(Refused, match=r"than this worker's \(dropout: 0.2 vs 0.3\)"):
        open_worker_study(WorkerSettings(other, tmp_path, None, plan.study_name(), heartbeat=1))
    assert (tmp_path / "optuna.journal").read_bytes() == before


def test_a_study_made_before_a_config_field_existed_keeps_its_name(cache):
    """A field added to the config later (at its default) changes neither the study name nor the trial keys: a
    sweep folder written by the earlier version resumes after an upgrade instead of training everything again."""
    plan = plan_for(cache, ["theta=0.5,0.8"])
    earlier = {k: v for k, v in plan.base.to_dict().items() if k not in FIELDS_ADDED_AFTER_KEYS and k != "seed"}
    identity = {"cache_fingerprint": plan.fingerprint, "space": jsonable(plan.space), "base": jsonable(earlier)}
    assert plan.study_name() == f"{cache.stem}-{digest(identity)[:12]}"
    changed = plan_for(cache, ["theta=0.5,0.8"], base=base_config(text_pooling="lstm+mean"))
    assert changed.study_name() != plan.study_name()


def test_a_damaged_journal_is_refused_and_the_export_rebuilds_the_study(cache, tmp_path):
    plan = plan_for(cache, ["theta=0.5,0.8"], base=base_config(epochs=1))
    summary = run_sweep(plan, tmp_path, heartbeat=1, log=lambda *_: None)
    journal, results = tmp_path / "optuna.journal", (tmp_path / "results.jsonl").read_bytes()
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 6, "trial_i')  # a writer killed mid-line
    messages = []
    assert run_sweep(plan, tmp_path, heartbeat=1, log=messages.append)["points"] == summary["points"]
    assert journal.read_bytes().endswith(b"\n") and not TRAINED.search("\n".join(messages))
    lines = journal.read_bytes().splitlines(keepends=True)
    damaged = b"".join([*lines[:3], b"\x00\x07 not a record\n", *lines[3:]])
    journal.write_bytes(damaged)
    with pytest.raises(InputError, match=r"optuna.journal: line 4 is not an Optuna journal record"):
        run_sweep(plan, tmp_path, heartbeat=1, log=lambda *_: None)
    assert journal.read_bytes() == damaged and (tmp_path / "results.jsonl").read_bytes() == results
    journal.rename(tmp_path / "damaged.journal")  # what the message says to do
    messages = []
    rebuilt = run_sweep(plan, tmp_path, heartbeat=1, log=messages.append)
    assert "imported 2 finished trials from" in "\n".join(messages) and not TRAINED.search("\n".join(messages))
    assert rebuilt["points"] == summary["points"] and rebuilt["best"] == summary["best"]
