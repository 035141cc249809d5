"""What watches a sweep trial while it trains: the heartbeat thread that tells the storage its worker is alive,
and the pruner watch that reports each epoch's best dev metric to Optuna and says when to stop."""

from __future__ import annotations

import logging
import math
import threading

import optuna
from optuna.exceptions import UpdateFinishedTrialError

logger = logging.getLogger(__name__)


class Heartbeat:
    """Writes the trial's heartbeat every `interval` seconds from a thread; `lost` turns True when the storage
    says the trial was ended by someone else (another worker took it for dead)."""

    def __init__(self, storage, trial_id: int, interval: float) -> None:
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.lost = False
        self._stop = threading.Event()
        self._beat()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"heartbeat-{trial_id}")
        self._thread.start()

    def _beat(self) -> None:
        try:
            self.storage.record_heartbeat(self.trial_id)
        except UpdateFinishedTrialError:
            self.lost = True
        except Exception as error:  # a storage hiccup: the next beat tries again; grace is 4 beats
            logger.warning(f"heartbeat of trial id {self.trial_id} not written: {error}")

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and not self.lost:
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class PrunerWatch:
    """train's on_epoch for a sweep trial: reports the best dev metric so far to the trial's pruner each epoch and
    says stop when the pruner prunes it or another worker took the trial for dead."""

    def __init__(self, trial: optuna.Trial, heartbeat: Heartbeat, metric: str) -> None:
        self.trial, self.heartbeat, self.metric = trial, heartbeat, metric
        self.best = -math.inf
        self.stopped: dict = {}

    def on_epoch(self, epoch: int, dev: dict) -> bool:
        self.best = max(self.best, dev[self.metric])
        try:
            self.trial.report(self.best, epoch)
            if self.heartbeat.lost:
                raise UpdateFinishedTrialError("ended by another worker")
            if self.trial.should_prune():
                self.stopped["pruned_at"] = epoch
                return True
        except UpdateFinishedTrialError:
            self.stopped["lost"] = True
            return True
        return False
