"""Every use of Optuna beyond its public API, in one place: the storage behind a study, a trial's storage id, the
heartbeat interface, and the Redis journal's client. Optuna offers no public way to claim a WAITING trial from several processes or to write a
trial's system attributes, which a sweep whose workers come and go needs; these few accessors are what an Optuna
upgrade has to check (pyproject.toml pins optuna>=5,<6, and tests/test_sweep_study.py runs each of them).
"""

from __future__ import annotations

import optuna
from optuna.storages._heartbeat import BaseHeartbeat  # noqa: F401  (re-exported: the heartbeat interface)
from optuna.trial import FrozenTrial


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a live or frozen trial (not its number, which counts within the study)."""
    return trial._trial_id


def trial_id_of(study: optuna.Study, number: int) -> int:
    return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)


def stored_trial(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The trial as the storage holds it now (another worker may have ended it)."""
    return study._storage.get_trial(trial._trial_id)


def set_system_attr(study: optuna.Study, trial: optuna.Trial, key: str, value) -> None:
    study._storage.set_trial_system_attr(trial._trial_id, key, value)


def check_redis_connection(backend) -> None:
    """A Redis journal connects lazily: ping it now, so that a wrong host or port fails here, named."""
    backend._redis.ping()
