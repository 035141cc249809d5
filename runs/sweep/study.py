"""The Optuna study behind a sweep: what it is made from, its name, the fixed trials of a grid, claims, retries.

One study per sweep. Its name is the cache file's stem and a digest of what makes its results comparable: the
cache's fingerprint, the swept axes and their values, and the base config (every field but the seed). A study of
that name made from anything else (only possible with an explicit --study name) is refused with the list of
differences; so is a sweep folder whose study was made from other settings.

A trial is one point and one seed, not a point's mean over seeds: every (point, seed) is then one unit of work
that any worker can take, a killed worker loses one seed's training, the pruner compares one training curve with
others at the same epoch, and the summary's mean +- std over seeds comes from the trials as before.

Exactly once per (point, seed), with any number of workers: a grid (or a random subset of it) is enqueued as
fixed trials (WAITING) carrying the trial's key, and a worker claims one by moving it WAITING -> RUNNING, which
Optuna's storages do atomically (the move fails for all but one claimant). Should a key ever be enqueued twice
(two workers creating the plan at once, or re-enqueuing after a crash), only the lowest-numbered live trial of a
key is trained; a later one is ended as FAIL with `spp_scl:duplicate_of` and never trained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from spp_scl.core.errors import Refused
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.runs.sweep.grid import expand, point_name
from spp_scl.runs.sweep.optuna_adapter import storage_of, trial_id_of
from spp_scl.runs.sweep.worker_identity import owner_is_gone
from spp_scl.runs.trials.executor import Trial, read_results

logger = logging.getLogger(__name__)

STUDY_ATTR = "spp_scl"  # study user attribute: what the study is made from, written by its creator
OWNER_KEY = "spp_scl:worker"  # trial system attribute: the process that claimed it (spp_scl.runs.sweep.worker_identity)
DUPLICATE_KEY = "spp_scl:duplicate_of"  # trial system attribute of a FAIL trial that was a duplicate claim
RETRY_KEY = "spp_scl:retry_of"  # trial system attribute: the numbers of the trials this one retries
FINAL_FAILURE = "error"  # user attribute of a trial that failed for good (diverged): not retried
WAIT_FOR_CREATOR_SECONDS = 60
SAMPLERS = ("grid", "random", "tpe")


def jsonable(value):
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def _choice(value):
    """An axis value as an Optuna categorical choice (scalars as they are; a tuple as its JSON text)."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(jsonable(value))


def digest(value) -> str:
    return hashlib.sha256(json.dumps(jsonable(value), sort_keys=True).encode()).hexdigest()


def cache_fingerprint_digest(cache: Path) -> str:
    from spp_scl.cache.layout import read_attrs

    return digest(read_attrs(Path(cache))["fingerprint"])[:16]


@dataclass
class SweepPlan:
    """What a sweep trains: the base config, the axes, the seeds, and how points are chosen."""

    cache: Path
    base: SPPSCLConfig
    space: dict[str, list]
    seeds: list[int]
    sampler: str = "grid"  # grid | random (`points` distinct grid points) | tpe (`points` points chosen by TPE)
    points: int | None = None
    sample_seed: int = 0
    shuffle: bool = False  # enqueue the points in a random order (seeded by sample_seed): for pruning, see below
    fingerprint: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self.cache = Path(self.cache)
        if not self.fingerprint:
            self.fingerprint = cache_fingerprint_digest(self.cache)

    @property
    def metric(self) -> str:
        return self.base.selection_metric

    def fixed_trials(self) -> list[Trial]:
        """The trials enqueued up front, in the order workers take them: the grid, or `points` random points of
        it; none for TPE. Shuffled, the points come in a seeded random order (each point's seeds together).

        Why shuffle for pruning: asynchronous successive halving promotes a trial when it is in the top 1/factor
        of the trials that reached its rung before it, so the first trials at a rung meet little competition. In
        axis order, a grid hands the pruner a biased sequence (all of tau's worst value first, say), and every
        later, better point is promoted over the earlier ones: replaying a 27-point sweep's own curves through
        Optuna's pruner, axis order spent 558 of 810 epochs, random orders 198 on average (bench/sweep_pruning)."""
        if self.sampler == "tpe":
            return []
        points = expand(self.space, self.seeds, self.points if self.sampler == "random" else None, self.sample_seed)
        trials = [self.trial(point.overrides, point.seed, fold) for point in points for fold in self.folds()]
        if self.shuffle:
            points = list(dict.fromkeys(trial.name for trial in trials))
            random.Random(self.sample_seed).shuffle(points)
            position = {name: index for index, name in enumerate(points)}
            trials.sort(key=lambda trial: position[trial.name])  # stable: a point's seeds stay in order
        return trials

    def grid_size(self) -> int:
        size = 1
        for values in self.space.values():
            size *= len(values)
        return size

    def distributions(self) -> dict[str, CategoricalDistribution]:
        return {name: CategoricalDistribution([_choice(v) for v in values]) for name, values in self.space.items()}

    def params(self, overrides: dict) -> dict:
        return {name: _choice(value) for name, value in overrides.items()}

    def overrides(self, params: dict) -> dict:
        """Optuna params back to config values (a tuple axis's JSON text to its tuple)."""
        return {
            name: next(v for v in values if _choice(v) == params[name])
            for name, values in self.space.items()
            if name in params
        }

    def folds(self) -> list[int | None]:
        """The held-out parts each (point, seed) trains once for, under k-fold selection (base.selection "folds":
        spp_scl/cache/folds.py); [None] for selection on the cache's dev split."""
        return list(range(self.base.folds)) if self.base.selection == "folds" else [None]

    def trial(self, overrides: dict, seed: int, fold: int | None = None) -> Trial:
        """A point's trial for one seed (and fold): named by the point's axis values, so its folds and seeds are
        one row of the summary."""
        return Trial(point_name(overrides), overrides if fold is None else {**overrides, "fold": fold}, seed)

    def identity(self) -> dict:
        base = {k: v for k, v in self.base.identity().items() if k != "seed"}
        return {"cache_fingerprint": self.fingerprint, "space": jsonable(self.space), "base": jsonable(base)}

    def study_name(self) -> str:
        return f"{self.cache.stem}-{digest(self.identity())[:12]}"


def differences(made_from: dict, wanted: dict) -> list[str]:
    """What differs between two identities, as short phrases for a one-line error."""
    found = []
    if made_from.get("cache_fingerprint") != wanted.get("cache_fingerprint"):
        found.append(
            f"another cache (fingerprint {made_from.get('cache_fingerprint')} vs {wanted.get('cache_fingerprint')})"
        )
    old_space, new_space = made_from.get("space", {}), wanted.get("space", {})
    for name in sorted(set(old_space) | set(new_space)):
        if old_space.get(name) != new_space.get(name):
            found.append(f"axis {name}: {old_space.get(name, 'not swept')} vs {new_space.get(name, 'not swept')}")
    old_base, new_base = made_from.get("base", {}), wanted.get("base", {})
    for name in sorted(set(old_base) | set(new_base)):
        if old_base.get(name) != new_base.get(name):
            found.append(f"{name}: {old_base.get(name)} vs {new_base.get(name)}")
    return found


def trial_key(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get("key")


def covers_its_key(trial: FrozenTrial) -> bool:
    """A trial that stands for its key: live or finished, or failed for good (not to be trained again)."""
    return trial.state != TrialState.FAIL or FINAL_FAILURE in trial.user_attrs


def open_study(
    plan: SweepPlan,
    storage,
    study_name: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    results: Path | None = None,
    only_study: bool = False,
    log=None,
) -> optuna.Study:
    """Create the study (its creator imports finished trials from an older `results` export and enqueues the
    plan), or load it and check it was made from the same cache, axes and base config. `only_study`: the
    storage belongs to this sweep folder, so any other study in it means the folder holds another sweep."""
    log = log or logger.info
    wanted = plan.identity()
    if only_study:
        for other in storage.get_all_studies():
            if other.study_name != study_name:
                made_from = other.user_attrs.get(STUDY_ATTR, {})
                raise Refused(
                    f"this sweep folder holds the study {other.study_name}, made from other settings ("
                    + "; ".join(differences(made_from, wanted) or ["unknown"])
                    + "): use another --out, or the same cache, axes and --set values"
                )
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize")
        created = True
    except DuplicatedStudyError:
        created = False
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
    if created:
        imported = import_results(study, plan, results) if results else 0
        if imported:
            log(f"imported {imported} finished trials from {results}")
        enqueue_missing(study, plan)
        study.set_user_attr(STUDY_ATTR, {**wanted, "cache": plan.cache.name, "sampler": plan.sampler})
        return study
    made_from = _wait_for_creator(study)
    if made_from is None:  # the creator died before writing it: adopt the study and complete its plan
        study.set_user_attr(STUDY_ATTR, {**wanted, "cache": plan.cache.name, "sampler": plan.sampler})
    elif differences(made_from, wanted):
        raise Refused(
            f"the study {study_name} was made from other settings ("
            + "; ".join(differences(made_from, wanted))
            + "): give another --study name, or the same cache, axes and --set values"
        )
    enqueue_missing(study, plan)
    return study


def _wait_for_creator(study: optuna.Study) -> dict | None:
    deadline = time.monotonic() + WAIT_FOR_CREATOR_SECONDS
    while True:
        made_from = study.user_attrs.get(STUDY_ATTR)
        if made_from is not None or time.monotonic() > deadline:
            return made_from
        time.sleep(0.5)


def enqueue_missing(study: optuna.Study, plan: SweepPlan) -> int:
    """Enqueue each planned (point, seed) that no trial stands for yet; returns how many."""
    covered = {trial_key(t) for t in study.get_trials(deepcopy=False) if covers_its_key(t)}
    added = 0
    for trial in plan.fixed_trials():
        key = trial.key(plan.base)
        if key not in covered:
            study.enqueue_trial(plan.params(trial.overrides), user_attrs=trial_attrs(trial, key))
            covered.add(key)
            added += 1
    return added


def trial_attrs(trial: Trial, key: str) -> dict:
    attrs = {"key": key, "name": trial.name, "seed": trial.seed, "overrides": jsonable(trial.overrides)}
    if "fold" in trial.overrides:
        attrs["fold"] = trial.overrides["fold"]
    return attrs


def import_results(study: optuna.Study, plan: SweepPlan, results: Path) -> int:
    """Finished trials of a results.jsonl (from the process-pool engine, or this study's own export when its
    journal was moved away) become COMPLETE trials, so they are never trained again."""
    distributions = plan.distributions()
    imported = 0
    for row in read_results(results):
        if row.get("state", "complete") != "complete" or not isinstance(row.get("overrides"), dict):
            continue
        try:
            overrides = {name: _typed(plan, name, value) for name, value in row["overrides"].items() if name != "fold"}
            trial = plan.trial(overrides, int(row["seed"]), row["overrides"].get("fold"))
            if set(overrides) != set(plan.space) or trial.key(plan.base) != row.get("key"):
                continue
            value = float(row["dev"][plan.metric])
        except (KeyError, TypeError, ValueError, StopIteration):
            continue
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                value=value,
                params=plan.params(overrides),
                distributions=distributions,
                user_attrs={**trial_attrs(trial, row["key"]), "row": {**row, "state": "complete"}, "imported": True},
            )
        )
        imported += 1
    return imported


def _typed(plan: SweepPlan, name: str, value):
    """A value read back from JSON as the axis holds it (a list back to its tuple)."""
    return next(v for v in plan.space[name] if jsonable(v) == value)


def claim_waiting(study: optuna.Study) -> optuna.Trial | None:
    """Move the first WAITING trial this worker can get to RUNNING: the storage lets one claimant win."""
    storage = storage_of(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = trial_id_of(study, trial.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id)
        except UpdateFinishedTrialError:
            continue
    return None


def duplicate_of(study: optuna.Study, number: int, key: str) -> int | None:
    """The number of a lower-numbered trial that stands for the same key, if any (then this one is not trained)."""
    for other in study.get_trials(deepcopy=False):
        if other.number < number and trial_key(other) == key and covers_its_key(other):
            return other.number
    return None


def retry_unfinished(study: optuna.Study, trial: FrozenTrial) -> None:
    """The stale-trial callback: enqueue the trial again (its point, seed and key). Unlike Optuna's
    RetryHeartbeatStaleTrialCallback, the pruner's rung records are not copied: the retry starts at epoch 1 and
    must meet the first rung again."""
    fixed = trial.system_attrs.get("fixed_params") or trial.params
    if not fixed or "key" not in trial.user_attrs:  # a TPE trial that died before it had a point: nothing to redo
        return
    keep = ("key", "name", "seed", "overrides")
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            user_attrs={k: trial.user_attrs[k] for k in keep if k in trial.user_attrs},
            system_attrs={"fixed_params": fixed, RETRY_KEY: [*trial.system_attrs.get(RETRY_KEY, []), trial.number]},
        )
    )


def recover_unfinished(study: optuna.Study, grace: float) -> list[int]:
    """End the RUNNING trials whose worker is gone and enqueue them again: at once those whose owner process on
    this machine no longer exists (kill -9) or that never named an owner within the grace period, then those
    whose heartbeat is stale (Optuna's fail_stale_trials, any machine). Returns the numbers of the trials that
    were running and are now ended (by this call, or by another worker at the same moment)."""
    storage, ended = storage_of(study), []
    now = time.time()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        owner = trial.system_attrs.get(OWNER_KEY)
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        if not (owner_is_gone(owner) or (owner is None and now - started > grace)):
            continue
        trial_id = trial_id_of(study, trial.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                retry_unfinished(study, storage.get_trial(trial_id))
        except UpdateFinishedTrialError:  # another worker ended it first (and enqueued the retry)
            continue
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    if running:
        failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        ended = sorted(t.number for t in running if t.number in failed)
    return ended
