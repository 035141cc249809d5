"""A sweep worker: claims trials of the study one at a time and trains them, until the study is finished.

Any number of workers, in processes of one machine (`--jobs`) or on several machines (`--storage URL`), run this
same loop on one study. Each round it first ends and re-enqueues the trials whose worker is gone (stale heartbeat,
or a dead owner process on this machine), then claims a WAITING trial; when none is left it enqueues planned
trials that nothing stands for (after a crash), asks TPE for a new point while the budget lasts, or waits for the
trials other workers are still running (one of them may die and need a retry). It ends when nothing is waiting or
running. While a trial trains, a heartbeat thread tells the storage its worker is alive.

Each epoch's best dev metric so far is reported to Optuna (the value the trial would have if it stopped there);
the pruner may then stop the trial, which is recorded as PRUNED with the metrics of its selected epoch so far.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from spp_scl.core.errors import EXIT_INTERRUPTED, Diverged, Refused, ToolError
from spp_scl.runs.sweep.optuna_adapter import set_system_attr, storage_of, stored_trial, trial_id
from spp_scl.runs.sweep.storage import open_storage
from spp_scl.runs.sweep.study import (
    DUPLICATE_KEY,
    FINAL_FAILURE,
    OWNER_KEY,
    STUDY_ATTR,
    SweepPlan,
    claim_waiting,
    covers_its_key,
    differences,
    duplicate_of,
    enqueue_missing,
    recover_unfinished,
    retry_unfinished,
    trial_attrs,
)
from spp_scl.runs.sweep.trial_watch import Heartbeat, PrunerWatch
from spp_scl.runs.sweep.worker_identity import this_process
from spp_scl.runs.trials.executor import OpenedSplits, result_row, train_unit
from spp_scl.runs.trials.worker_resources import pin_to_gpu

logger = logging.getLogger(__name__)

PRUNERS = ("none", "successive-halving", "hyperband")
MAX_REPEATED_POINTS = 50


@dataclass(frozen=True)
class Pruning:
    kind: str = "none"  # none | successive-halving | hyperband
    min_epochs: int | None = None  # the first rung; default: epochs / factor^3, at least 1
    factor: int = 3

    def first_rung(self, epochs: int) -> int:
        return self.min_epochs or max(1, epochs // self.factor**3)

    def pruner(self, epochs: int) -> optuna.pruners.BasePruner:
        if self.kind == "successive-halving":
            return optuna.pruners.SuccessiveHalvingPruner(
                min_resource=self.first_rung(epochs), reduction_factor=self.factor
            )
        if self.kind == "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=self.first_rung(epochs), max_resource=epochs, reduction_factor=self.factor
            )
        return optuna.pruners.NopPruner()

    def describe(self, epochs: int) -> str:
        if self.kind == "none":
            return "none"
        rungs, rung = [], self.first_rung(epochs)
        while rung < epochs:
            rungs.append(rung)
            rung *= self.factor
        return f"{self.kind} (factor {self.factor}, rungs at epochs {', '.join(map(str, rungs))})"


@dataclass
class WorkerSettings:
    """Everything a worker process needs (picklable: spawned workers open their own storage and cache)."""

    plan: SweepPlan
    folder: Path
    storage_url: str | None
    study_name: str
    heartbeat: int = 30
    pruning: Pruning = Pruning()
    threads: int | None = None
    device: str | None = None  # this worker's CUDA_VISIBLE_DEVICES (runs/trials/worker_resources.py)
    # Grid and random sweeps: a worker claims up to group_size waiting trials at once and trains those that read
    # the same batches interleaved (runs/train/interleaved_trials.py), taking no more than its share of the
    # waiting trials when `workers` processes of this machine share them. 1 = one trial at a time.
    group_size: int = 1
    workers: int = 1
    shared: str | None = None  # the jobs' shared copies of the splits (runs/trials/split_storage.py)

    @property
    def grace(self) -> int:
        return 4 * self.heartbeat

    def sampler(self) -> optuna.samplers.BaseSampler:
        if self.plan.sampler == "tpe":  # constant_liar: parallel workers do not all pick the same promising point
            return optuna.samplers.TPESampler(constant_liar=True)
        return optuna.samplers.RandomSampler(seed=self.plan.sample_seed)  # never asked: points are enqueued


def append_row(path: Path, row: dict) -> None:
    """One finished trial as a line of results.jsonl at once (an export; the study is the record). Locked, so
    workers sharing the folder never interleave lines."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
        fcntl.flock(handle, fcntl.LOCK_UN)


class Worker:
    def __init__(self, settings: WorkerSettings, study: optuna.Study, log=None) -> None:
        self.settings, self.study, self.plan = settings, study, settings.plan
        self.log = log or logger.info
        self.splits = OpenedSplits(settings.plan.cache, settings.shared)
        self.trained = 0
        self.repeats = 0  # TPE points in a row that were taken already

    def run(self) -> int:
        """Work until the study is finished; returns how many trials this worker trained."""
        poll = min(5.0, float(self.settings.heartbeat))
        while True:
            for number in recover_unfinished(self.study, self.settings.grace):
                self.log(f"trial {number}: its worker is gone; enqueued again")
            trial = claim_waiting(self.study) or self._new_point()
            if trial is not None:
                self._run_claimed([trial, *self._claim_more()] if self.plan.sampler != "tpe" else [trial])
                continue
            if enqueue_missing(self.study, self.plan):
                continue
            if not self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
                return self.trained
            time.sleep(poll)  # others are still training: one may die and leave a trial to retry

    def _new_point(self) -> optuna.Trial | None:
        """TPE only: a new trial for a point TPE picks, while fewer than `points` points are taken."""
        if self.plan.sampler != "tpe":
            return None
        taken = {t.user_attrs.get("name") for t in self.study.get_trials(deepcopy=False) if covers_its_key(t)}
        taken.discard(None)
        if len(taken) >= min(self.plan.points or self.plan.grid_size(), self.plan.grid_size()):
            return None
        if self.repeats >= MAX_REPEATED_POINTS:  # TPE keeps to points it has: the budget cannot be met here
            return None
        with warnings.catch_warnings():  # Optuna says heartbeats are meant for study.optimize: this loop runs them
            warnings.simplefilter("ignore")
            return self.study.ask()

    def _claim_more(self) -> list[optuna.Trial]:
        """Up to group_size - 1 more waiting trials, no more than this worker's share of those waiting."""
        if self.settings.group_size <= 1:
            return []
        waiting = len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        share = -(-(waiting + 1) // max(self.settings.workers, 1))
        more = []
        while len(more) + 1 < min(self.settings.group_size, share):
            trial = claim_waiting(self.study)
            if trial is None:
                break
            more.append(trial)
        return more

    def _run_claimed(self, trials: list[optuna.Trial]) -> None:
        """Claimed trials (one, or up to group_size): those of one interleave_key as a group, the others one at a
        time. A setting that diverges is recorded, not retried, and the sweep goes on; on Ctrl-C or a bug every
        unfinished trial is enqueued again for the next run, then the worker stops."""
        from spp_scl.runs.train.interleaved_trials import interleave_key

        heartbeats = [self._own(trial) for trial in trials]
        by_key: dict = {}
        try:
            for trial, heartbeat in zip(trials, heartbeats):
                prepared = self._prepare(trial, heartbeat)
                if prepared is not None:
                    by_key.setdefault(interleave_key(prepared[1].config(self.plan.base)), []).append(prepared)
            for key, members in by_key.items():
                for unit in [members] if key is not None else [[member] for member in members]:
                    self._train_unit(unit)
        except BaseException:
            for trial, heartbeat in zip(trials, heartbeats):
                self._give_back(trial, heartbeat)  # only those still running
            raise

    def _own(self, trial: optuna.Trial) -> Heartbeat:
        set_system_attr(self.study, trial, OWNER_KEY, this_process())
        return Heartbeat(storage_of(self.study), trial_id(trial), self.settings.heartbeat)

    def _prepare(self, trial: optuna.Trial, heartbeat: Heartbeat):
        """(trial, planned, key, heartbeat) of a claimed trial to train, or None when it is a duplicate."""
        overrides = self.plan.overrides(
            {name: trial.suggest_categorical(name, dist.choices) for name, dist in self.plan.distributions().items()}
        )
        seed = trial.user_attrs.get("seed", self.plan.seeds[0])
        planned = self.plan.trial(overrides, seed, trial.user_attrs.get("fold", self.plan.folds()[0]))
        key = trial.user_attrs.get("key") or planned.key(self.plan.base)  # the key it was enqueued with
        if "key" not in trial.user_attrs:  # a point TPE just picked
            for name, value in trial_attrs(planned, key).items():
                trial.set_user_attr(name, value)
        original = duplicate_of(self.study, trial.number, key)
        if original is not None:
            heartbeat.stop()
            set_system_attr(self.study, trial, DUPLICATE_KEY, original)
            self.study.tell(trial, state=TrialState.FAIL)
            self.log(f"trial {trial.number} ({planned.name} seed {seed}) is trial {original}: not trained twice")
            self.repeats += 1
            return None
        self.repeats = 0
        if self.plan.sampler == "tpe" and "fixed_params" not in stored_trial(self.study, trial).system_attrs:
            self._enqueue_other_seeds(overrides)
        return trial, planned, key, heartbeat

    def _diverged(self, trial: optuna.Trial, heartbeat: Heartbeat, error: Diverged) -> None:
        heartbeat.stop()
        trial.set_user_attr(FINAL_FAILURE, str(error))
        self.study.tell(trial, state=TrialState.FAIL)
        self.log(f"trial {trial.number}: {error}")

    def _give_back(self, trial: optuna.Trial, heartbeat: Heartbeat) -> None:
        """An unfinished trial is enqueued again for the next run (then the worker stops)."""
        heartbeat.stop()
        try:
            if stored_trial(self.study, trial).state == TrialState.RUNNING:
                self.study.tell(trial, state=TrialState.FAIL)
                retry_unfinished(self.study, stored_trial(self.study, trial))
        except Exception:
            pass  # the heartbeat or the owner check retries it instead

    def _enqueue_other_seeds(self, overrides: dict) -> None:
        """A point TPE picked trains at every seed (and fold): the first one here, the others enqueued."""
        units = [(seed, fold) for seed in self.plan.seeds for fold in self.plan.folds()][1:]
        for seed, fold in units:
            other = self.plan.trial(overrides, seed, fold)
            self.study.enqueue_trial(
                self.plan.params(overrides), user_attrs=trial_attrs(other, other.key(self.plan.base))
            )

    def _train_unit(self, members: list[tuple]) -> None:
        """Claimed trials trained as one unit (runs/trials/executor.train_unit: one alone, or several of one
        interleave_key interleaved); each is told as soon as it finishes, and each reports its own dev metric to its
        own Optuna trial every epoch (a pruned trial stops, or leaves the group). On Ctrl-C or a bug, _run_claimed
        enqueues again those not told yet."""
        configs = [planned.config(self.plan.base) for _, planned, _, _ in members]
        watches = [PrunerWatch(trial, heartbeat, config.selection_metric) for (trial, _, _, heartbeat), config in
                   zip(members, configs)]  # fmt: skip

        def finished(index: int, result, seconds: float) -> None:
            trial, planned, key, heartbeat = members[index]
            self._tell(trial, planned, key, heartbeat, result, watches[index].stopped, seconds)

        outcomes = train_unit(
            configs,
            [self.settings.folder / "trials" / key for _, _, key, _ in members],
            self.splits,
            on_epoch=lambda index, epoch, dev: watches[index].on_epoch(epoch, dev),
            on_finish=finished,
        )
        for (trial, _, _, heartbeat), outcome in zip(members, outcomes):
            if isinstance(outcome, Diverged):
                self._diverged(trial, heartbeat, outcome)

    def _tell(self, trial: optuna.Trial, planned, key: str, heartbeat: Heartbeat, result, stopped, seconds) -> None:
        """A trained trial: its row in the study and in results.jsonl, its state told."""
        config = planned.config(self.plan.base)
        metric = config.selection_metric
        run_dir = self.settings.folder / "trials" / key
        heartbeat.stop()
        if stopped.get("lost") or heartbeat.lost:
            self.log(f"trial {trial.number} ({planned.name} seed {planned.seed}) was taken for dead and retried")
            return
        row = {"key": key, **result_row(planned, config, result, seconds, str(run_dir))}
        row.update(state="pruned" if "pruned_at" in stopped else "complete", trial=trial.number)
        trial.set_user_attr("row", row)
        if "pruned_at" in stopped:
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, row["dev"][metric])
        append_row(self.settings.folder / "results.jsonl", row)
        self.trained += 1
        self.log(
            f"trial {trial.number} {planned.name} seed {planned.seed}: "
            + (f"pruned at epoch {stopped['pruned_at']}, " if "pruned_at" in stopped else "")
            + f"dev {metric} {row['dev'][metric]:.4f} (epoch {result.selected_epoch} of {result.epochs_run}, "
            f"{row['seconds']:.0f} s)"
        )


def open_worker_study(settings: WorkerSettings) -> optuna.Study:
    """The study, checked once more in this process: a worker whose code makes other trial keys (another version
    of the config, say) would take the whole plan for missing and enqueue it again, so it is refused."""
    storage = open_storage(settings.storage_url, settings.folder, settings.heartbeat, retry_unfinished)
    study = optuna.load_study(
        study_name=settings.study_name,
        storage=storage.storage,
        sampler=settings.sampler(),
        pruner=settings.pruning.pruner(settings.plan.base.epochs),
    )
    found = differences(study.user_attrs.get(STUDY_ATTR, {}), settings.plan.identity())
    if found:
        raise Refused(
            f"the study {settings.study_name} was made from other settings than this worker's ("
            + "; ".join(found)
            + "): every worker must run the same spp-scl version with the same cache, axes and --set values"
        )
    return study


def worker_process(settings: WorkerSettings, parent_pid: int, log_level: int) -> None:
    """Entry point of a spawned worker process (`--jobs N`)."""
    from spp_scl.runs.trials.parent_watch import exit_with_parent

    exit_with_parent(parent_pid)  # a sweep killed with kill -9 must not leave its workers training
    pin_to_gpu(settings.device)
    logging.basicConfig(level=log_level, format="%(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import torch

    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        Worker(settings, open_worker_study(settings)).run()
    except ToolError as error:  # one line, as the command line gives it; the parent names the worker
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:  # its trial was enqueued again; the parent says a rerun resumes
        sys.exit(EXIT_INTERRUPTED)
