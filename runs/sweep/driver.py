"""A sweep on an Optuna study: open or create the study, run the workers, write the summary and the pictures.

    run_sweep(SweepPlan(cache, base, space, seeds), folder)                      # one worker, journal in folder
    run_sweep(plan, folder, jobs=2, pruning=Pruning("successive-halving"))      # two worker processes
    run_sweep(plan, folder, storage_url="postgresql://user:pw@host/db")          # the same on every machine

The sweep folder holds study.json (which study in which storage), optuna.journal (the default storage),
trials/<key>/ (each trial's run folder), results.jsonl (one line per finished trial, appended as each finishes
and rewritten from the study at the end), summary.md / summary.json and the pictures. Each worker ends when the
study is finished, so every machine writes the whole study's summary.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import optuna
from optuna.trial import TrialState

from spp_scl.core.errors import InputError, Refused
from spp_scl.core.storage import write_atomically
from spp_scl.runs.sweep.grid import summarise, write_summary
from spp_scl.runs.sweep.storage import JOURNAL_NAME, StudyStorage, open_storage
from spp_scl.runs.sweep.study import (
    DUPLICATE_KEY,
    FINAL_FAILURE,
    RETRY_KEY,
    STUDY_ATTR,
    SweepPlan,
    differences,
    open_study,
)
from spp_scl.runs.sweep.worker import Pruning, Worker, WorkerSettings
from spp_scl.runs.sweep.worker_exits import guarded_worker_process, workers_error
from spp_scl.runs.trials.split_storage import resolve_group_size, shared_splits, train_split_storage
from spp_scl.runs.trials.worker_resources import threads_per_worker, worker_gpus

logger = logging.getLogger(__name__)

RECORD_NAME = "study.json"
OWN_JOURNAL = "optuna.journal in this folder"  # how study.json names the default storage (the folder may move)


def check_folder(folder: Path, storage: StudyStorage, where: str, name: str, plan: SweepPlan) -> None:
    """A sweep folder belongs to one study: refuse one whose study.json names another (other settings or storage)."""
    record_path = folder / RECORD_NAME
    if not record_path.exists():
        return
    try:
        record = json.loads(record_path.read_text())
        old_name, old_storage = record["study"], record["storage"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{record_path}: not a sweep folder's study record ({error})") from None
    if old_storage.startswith("journal:") and old_storage.endswith(f"/{JOURNAL_NAME}") and where == OWN_JOURNAL:
        old_storage = OWN_JOURNAL  # written with the journal's path by the first release of this engine
    if old_name == name and old_storage == where:
        return
    found = ["another storage"] if old_storage != where else []
    if old_storage == where:
        for other in storage.storage.get_all_studies():
            if other.study_name == old_name:
                found += differences(other.user_attrs.get(STUDY_ATTR, {}), plan.identity())
    raise Refused(
        f"{folder} holds the sweep of study {old_name} in {old_storage}, made from other settings ("
        + "; ".join(found or ["another study name"])
        + "): use another --out, or the same cache, axes, --set values and --storage"
    )


def run_sweep(
    plan: SweepPlan,
    folder: Path,
    storage_url: str | None = None,
    study_name: str | None = None,
    jobs: int = 1,
    heartbeat: int = 30,
    pruning: Pruning | None = None,
    log=None,
    group_size: int | None = None,
    data_note: str | None = None,
) -> dict:
    """Run (or join, or resume) the sweep's study until it is finished; returns the summary (also written). Grid
    and random sweeps train up to `group_size` waiting trials that read the same batches interleaved (1 = one at a
    time; None = spp_scl.runs.trials.split_storage.resolve_group_size; each trial trains as it does alone).
    `data_note` ("DEMO: generated data, not MVSA" for the demo) goes into the summary's title and JSON."""
    log = log or logger.info
    pruning = pruning or Pruning()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from spp_scl.runs.sweep.study import retry_unfinished

    storage = open_storage(storage_url, folder, heartbeat, retry_unfinished)
    name = study_name or plan.study_name()
    where = storage.shown if storage_url else OWN_JOURNAL
    check_folder(folder, storage, where, name, plan)
    settings = WorkerSettings(plan, folder, storage_url, name, heartbeat, pruning, workers=max(jobs, 1))
    study = open_study(
        plan,
        storage.storage,
        name,
        settings.sampler(),
        pruning.pruner(plan.base.epochs),
        results=folder / "results.jsonl",
        only_study=storage_url is None,
        log=log,
    )
    # Whole or absent (a sweep's other workers, and users' scripts, read it while this one starts).
    write_atomically(folder / RECORD_NAME, (json.dumps({"study": name, "storage": where}, indent=1) + "\n").encode())
    trials = study.get_trials(deepcopy=False)
    planned = len(plan.fixed_trials()) or (plan.points or plan.grid_size()) * len(plan.seeds)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    log(f"{finished} of {planned} trials already in the study {name} ({storage.shown})")
    log(f"pruning: {pruning.describe(plan.base.epochs)}")
    split_storage = "memory"  # where the jobs find the train split: decided once, for the group size and sharing
    if finished < planned:
        split_storage = train_split_storage(plan.cache, jobs)
        settings = replace(settings, group_size=resolve_group_size(group_size, plan.cache, jobs, log, split_storage))
    if jobs <= 1:
        Worker(settings, study, log).run()
    else:
        with shared_splits(plan.cache, split_storage, folder, log) as shared:
            run_worker_processes(replace(settings, shared=shared and str(shared)), jobs)
    summary = {"data_note": data_note, **study_summary(study, plan, storage, pruning)}
    export_results(study, plan, folder / "results.jsonl")
    from spp_scl.runs.sweep.optuna_plots import plot_study
    from spp_scl.runs.sweep.plots import plot_sweep

    rows = [row for row in ranked_rows(study, plan) if row["state"] == "complete"]
    figures = plot_sweep(rows, plan.metric, folder) if rows else []
    optuna_figures, _ = plot_study(study, plan.space, plan.metric, folder)
    summary["figures"] = [path.name for path in [*figures, *optuna_figures]]
    write_summary(summary, folder)
    return summary


def run_worker_processes(settings: WorkerSettings, jobs: int) -> None:
    """`jobs` worker processes on this machine, one core each (one GPU each when there are GPUs)."""
    import multiprocessing

    import torch

    context = multiprocessing.get_context("spawn")
    gpus = worker_gpus(jobs, torch.cuda.device_count())
    threads = threads_per_worker(jobs)
    level = logging.getLogger("runs").getEffectiveLevel()
    processes = [
        context.Process(
            target=guarded_worker_process,
            args=(replace(settings, threads=threads, device=gpus[index] if gpus else None), os.getpid(), level),
            name=f"sweep-worker-{index}",
        )
        for index in range(jobs)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    error = workers_error([(process.name, process.exitcode) for process in processes])
    if error is not None:  # a killed worker is not "bad input": runs/sweep/worker_exits.py
        raise error


def ranked_rows(study: optuna.Study, plan: SweepPlan) -> list[dict]:
    """One row per key (the lowest-numbered finished trial of it), complete and pruned, in the plan's order (then
    trial order), so that ties in the summary break the same way whatever order the workers finished in."""
    rows: dict[str, dict] = {}
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        row = trial.user_attrs.get("row")
        if row and trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and row["key"] not in rows:
            rows[row["key"]] = row
    order = {trial.key(plan.base): index for index, trial in enumerate(plan.fixed_trials())}
    return sorted(rows.values(), key=lambda row: order.get(row["key"], len(order)))


def export_results(study: optuna.Study, plan: SweepPlan, path: Path) -> None:
    """results.jsonl rewritten from the study (in place, under the lock the workers append with)."""
    import fcntl

    text = "".join(json.dumps(row) + "\n" for row in ranked_rows(study, plan))
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
        fcntl.flock(handle, fcntl.LOCK_UN)


def study_summary(study: optuna.Study, plan: SweepPlan, storage: StudyStorage, pruning: Pruning) -> dict:
    """The sweep summary (spp_scl.runs.sweep.grid.summarise) over the points whose every seed completed, with the study's
    counts, the epochs spent, and the pruned and failed trials listed apart."""
    metric = plan.metric
    rows = ranked_rows(study, plan)
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL and FINAL_FAILURE in t.user_attrs]
    left_out = {r["name"] for r in rows if r["state"] == "pruned"} | {t.user_attrs.get("name") for t in failed}
    summary = summarise([r for r in rows if r["state"] == "complete" and r["name"] not in left_out], metric)
    epochs = {"complete": 0, "pruned": 0, "unfinished": 0}
    for trial in trials:
        row = trial.user_attrs.get("row")
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and row:
            epochs["complete" if trial.state == TrialState.COMPLETE else "pruned"] += row["epochs_run"]
        else:  # killed, lost, diverged: the epochs it reported before it ended
            epochs["unfinished"] += len(trial.intermediate_values)
    states = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    summary["study"] = {
        "name": study.study_name,
        "storage": storage.shown,
        "sampler": plan.sampler,
        "pruner": pruning.describe(plan.base.epochs),
        "trials": {
            **states,
            "duplicates": sum(DUPLICATE_KEY in t.system_attrs for t in trials),
            "retries": sum(RETRY_KEY in t.system_attrs for t in trials),
        },
        "epochs": {**epochs, "total": sum(epochs.values())},
        "dashboard": f"optuna-dashboard {storage.dashboard}",
    }
    summary["pruned"] = [
        {"name": r["name"], "seed": r["seed"], "epoch": r["epochs_run"], "dev": r["dev"][metric]}
        for r in rows
        if r["state"] == "pruned"
    ]
    summary["failed"] = [
        {"name": t.user_attrs.get("name"), "seed": t.user_attrs.get("seed"), "error": t.user_attrs[FINAL_FAILURE]}
        for t in failed
    ]
    return summary
