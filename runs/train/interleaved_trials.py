"""Train several trials that read the same batches in one pass: each batch is read once and every trial takes its
step on it in turn.

A trial here is the trial of runs/train/trainer.py unchanged (a TrialTraining: its own weights, optimiser, schedule,
weight average and run folder, the same step and kernels), so it trains as it does alone by construction; what
interleaving adds is only the order in which the trials' steps run. Two things keep each trial's numbers its own:
- its random stream: torch's global generator (dropout masks, input noise) is each trial's own, put in place
  before its step and taken back after (the CUDA generator too on a GPU);
- its batches: trials interleave only when their batches are the same ones (interleave_key: one train split, one
  batch size, one seed, so one shuffled order; clean features, as stored views would be drawn per trial).
What a trial gains is the read: a train or dev batch gathered (from memory) or read (from the file) once for the
group, and moved to the device once. A trial that stops (its epochs, its patience, a pruner,
a divergence) leaves; the others go on. log.jsonl's "seconds" is the trial's own steps and dev pass plus its share
of the reads.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch

from spp_scl.core.errors import Diverged
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.runs.train.trainer import TrialTraining, open_splits
from spp_scl.runs.train.trial_run import TrainResult

# What fixes a trial's batches: the train split it reads (fold, text layers) and the shuffled order of its seed.
BATCH_FIELDS = ("selection", "folds", "fold", "text_layers_last", "batch_size", "seed", "train_views")


def interleave_key(config: SPPSCLConfig) -> str | None:
    """Trials with the same key read the same batches and may interleave; None for one that trains alone (the
    closed-form probe; stored views, drawn per trial)."""
    if config.head == "probe" or config.train_views != "clean":
        return None
    return json.dumps({name: getattr(config, name) for name in BATCH_FIELDS}, sort_keys=True, default=list)


class _Interleaved:
    """A TrialTraining with its own random stream, and the seconds of its own work this epoch."""

    def __init__(self, index: int, trial: TrialTraining):
        self.index, self.trial, self.seconds = index, trial, 0.0
        self.cuda = trial.device.type == "cuda"
        self.rng = torch.get_rng_state()  # the state TrialTraining left: seeded, after the weights were drawn
        self.cuda_rng = torch.cuda.get_rng_state(trial.device) if self.cuda else None

    @contextlib.contextmanager
    def own_stream(self):
        """The trial's random stream in place while it works; its time counted."""
        torch.set_rng_state(self.rng)
        if self.cuda:
            torch.cuda.set_rng_state(self.cuda_rng, self.trial.device)
        started = time.perf_counter()
        try:
            yield self.trial
        finally:
            self.seconds += time.perf_counter() - started
            self.rng = torch.get_rng_state()
            if self.cuda:
                self.cuda_rng = torch.cuda.get_rng_state(self.trial.device)


def train_interleaved(
    cache: str | Path,
    configs: list[SPPSCLConfig],
    run_dirs: list[str | Path],
    *,
    in_memory: bool | None = None,
    cpu: bool = False,
    log=None,
    splits: dict | None = None,
    on_epoch=None,
    on_finish=None,
) -> list[TrainResult | Exception]:
    """Train `configs` (one interleave_key) interleaved; trial i writes run_dirs[i]. Returns, per trial, its
    TrainResult or the Diverged error that ended it (the others go on). `on_epoch(i, epoch, dev_metrics) -> bool`
    is train's on_epoch for trial i (True stops it); `on_finish(i, result)` is called as soon as trial i is done."""
    keys = {interleave_key(config) for config in configs}
    if None in keys or len(keys) != 1:
        raise ValueError("train_interleaved takes configs of one interleave_key")
    splits = splits or open_splits(cache, configs[0], in_memory)
    trials = []
    for index, (config, run_dir) in enumerate(zip(configs, run_dirs)):
        hook = None if on_epoch is None else (lambda epoch, dev, i=index: on_epoch(i, epoch, dev))
        label = Path(run_dir).name
        tagged = None if log is None else (lambda line, label=label: log(f"{label}: {line}"))
        trial = TrialTraining(cache, config, run_dir, splits, cpu=cpu, log=tagged, on_epoch=hook)
        trials.append(_Interleaved(index, trial))
    # The batches every member reads (one key): the first trial's feed, in the order its shuffling generator draws
    # (every member's own generator, seeded alike, would draw the same).
    feed, device, shuffle = trials[0].trial.feed, trials[0].trial.device, trials[0].trial.shuffle
    batch_size = configs[0].batch_size
    outcomes: dict[int, TrainResult | Exception] = {}

    def leave(member: _Interleaved, outcome) -> None:
        trials.remove(member)
        outcomes[member.index] = outcome
        if on_finish is not None and isinstance(outcome, TrainResult):
            on_finish(member.index, outcome)

    def each(move: str, *args) -> None:
        """The TrialTraining method `move` for every member in turn, in its own stream; one that diverges leaves."""
        for member in list(trials):
            try:
                with member.own_stream() as trial:
                    getattr(trial, move)(*args)
            except Diverged as error:
                leave(member, error)

    epoch = 0
    while trials:
        epoch += 1
        reading = 0.0  # seconds of reading batches, shared among the members
        for member in trials:
            member.seconds = 0.0
        each("start_epoch")
        train_batches = feed.batches(batch_size, shuffle)
        while trials:
            started = time.perf_counter()
            batch = next(train_batches, None)
            inputs = None if batch is None else feed.inputs(batch, device)  # on the device once for all
            reading += time.perf_counter() - started
            if batch is None:
                break
            each("train_step", batch, epoch, inputs)
        each("start_dev_pass", epoch)
        dev_batches = splits["dev"].batches(batch_size)
        while trials:
            started = time.perf_counter()
            batch = next(dev_batches, None)
            reading += time.perf_counter() - started
            if batch is None:
                break
            each("dev_batch", batch)
        share = reading / max(len(trials), 1)
        for member in list(trials):
            try:
                with member.own_stream() as trial:
                    finished = trial.end_epoch(epoch, member.seconds + share)
                    result = trial.finish() if finished else None
            except Diverged as error:
                leave(member, error)
                continue
            if result is not None:
                leave(member, result)
    return [outcomes[index] for index in range(len(configs))]
