"""Fit a head (config.head: SPP-SCL, CLMLF- or MDSE-style) from a feature cache alone (no encoder is ever loaded),
select on dev, write a run: the loop of one trial, over a TrialTraining (one trial's state and its steps), which
interleaved trials (runs/train/interleaved_trials.py) drive too. What a run folder holds and how each epoch ends
(dev metrics, selection, the log line, patience) is runs/train/trial_run.py, shared with the probe.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from spp_scl.cache.reader import CachedSplit
from spp_scl.core.allocator import keep_freed_memory
from spp_scl.core.errors import Diverged, InputError, Refused
from spp_scl.core.extras import require
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.head_kinds import training_step_for
from spp_scl.heads.input_noise import attach_input_noise
from spp_scl.heads.precision import autocast, check_precision, scaled_for
from spp_scl.runs.train.checkpoint import build_head
from spp_scl.runs.train.divergence import check_weights
from spp_scl.runs.train.non_finite import check_batch_inputs
from spp_scl.runs.train.resume import EpochStates
from spp_scl.runs.train.run_lock import run_lock
from spp_scl.runs.train.stop_signals import stop_requested
from spp_scl.runs.train.trial_run import TrainResult, TrialRun, batch_probabilities, head_shapes
from spp_scl.runs.train.view_feed import TrainingFeed
from spp_scl.runs.train.weight_average import evaluated_head, update_average, weight_average

logger = logging.getLogger(__name__)


def open_splits(
    cache: str | Path, config: SPPSCLConfig, in_memory: bool | None = None, shared: str | Path | None = None
) -> dict[str, CachedSplit]:
    """The splits `config` trains, selects and reports on: cache_splits, under k-fold selection its fold."""
    return for_selection(cache_splits(cache, config, in_memory, shared), config)


def cache_splits(
    cache: str | Path, config: SPPSCLConfig, in_memory: bool | None = None, shared: str | Path | None = None
) -> dict[str, CachedSplit]:
    """The cache's splits (without test under k-fold selection: never opened), reading only the text layers the
    config uses (the last k of those cached). Batches keep the tokens in the cache's dtype (float16): the heads
    widen only the tokens they read. `shared`: a folder of shared copies the jobs of one machine map
    (cache/shared_split.py). Every training path opens its splits here, so this is also where the process starts
    reusing freed memory (spp_scl/core/allocator.py)."""
    from spp_scl.cache.layout import split_sizes

    keep_freed_memory()

    present = [split for split, records in split_sizes(cache).items() if records]  # damaged metadata: one line
    if config.selection == "folds":
        present = [split for split in present if split != "test"]  # never opened under k-fold selection
    layers = list(range(-config.text_layers_last, 0)) if config.text_layers_last else None
    return {
        split: CachedSplit(cache, split, layers=layers, in_memory=in_memory, token_dtype=None, shared=shared)
        for split in present
    }


def for_selection(splits: dict, config: SPPSCLConfig) -> dict:
    """The splits `config` trains and selects on: the cache's own, or under selection folds its fold of train+dev
    (spp_scl/cache/folds.py), with no test split."""
    if config.selection != "folds":
        return splits
    from spp_scl.cache.folds import fold_splits

    return fold_splits(splits, config.folds, config.fold)


def tracker_config(config: SPPSCLConfig) -> dict:
    """The config as trackers take it (TensorBoard's hparams want scalars or strings: no tuples, no None)."""
    return {
        key: value if isinstance(value, (int, float, str, bool)) else str(value)
        for key, value in config.to_dict().items()
    }


def tracker_values(line: dict) -> dict:
    """One log.jsonl line as namespaced tracker values: dev/<metric>, and train/<loss, step-two rate, lr, seconds>."""
    values = {}
    for key, value in line.items():
        if key in ("epoch", "selected") or not isinstance(value, (int, float)):
            continue
        if key.startswith("dev_"):
            values[f"dev/{key[4:]}"] = value
        else:
            values[f"train/{key.removeprefix('train_')}"] = value
    return values


def trackers_for(cpu: bool, report_to: tuple[str, ...], run_dir: Path):
    """Accelerate's Accelerator as the front of the experiment trackers, or None without trackers. Training itself
    is plain PyTorch on one device (precision is config.precision), which needs no extra package."""
    if not report_to:
        return None
    accelerate = require("accelerate")
    return accelerate.Accelerator(cpu=cpu, log_with=list(report_to), project_dir=run_dir / "trackers")


def train(
    cache: str | Path,
    config: SPPSCLConfig,
    run_dir: str | Path,
    *,
    cpu: bool = False,
    in_memory: bool | None = None,
    log=None,
    splits: dict | None = None,
    report_to: tuple[str, ...] = (),
    on_epoch=None,
) -> TrainResult:
    """Train on the cache's train split, select by `config.selection_metric` on dev, evaluate the selected
    weights on dev and test. `splits` lets a caller (a sweep) pass splits it already opened. `log` takes the
    per-epoch lines (default: this module's logger); `report_to` names Accelerate trackers ("tensorboard",
    "wandb", "mlflow") that get the same per-epoch values under `train/...` and `dev/...` keys, with the
    tracker's files in `run_dir/trackers`; log.jsonl stays the record the tool itself reads.
    `on_epoch(epoch, dev_metrics) -> bool` is called after each epoch's dev pass (a sweep reports to its pruner
    there); True stops training as patience does: the selected weights are evaluated and the run is complete.

    Training runs in one process on one device (a trial is small; sweeps run trials side by side instead):
    under `accelerate launch` with several processes it refuses rather than train the same run N times.
    One training per run folder: another one into `run_dir` is refused (Refused, naming it) while this one runs."""
    with run_lock(run_dir):
        return _train_in_locked_folder(
            cache,
            config,
            Path(run_dir),
            cpu=cpu,
            in_memory=in_memory,
            log=log,
            splits=splits,
            report_to=report_to,
            on_epoch=on_epoch,
        )


def _train_in_locked_folder(
    cache, config: SPPSCLConfig, run_dir: Path, *, cpu, in_memory, log, splits, report_to, on_epoch
) -> TrainResult:
    """train(), with its run folder locked: the loop of one trial."""
    if config.head == "probe":  # fitted in closed form, not by gradient steps
        from spp_scl.runs.train.probe import fit_probe

        return fit_probe(cache, config, run_dir, splits=splits, log=log)
    splits = splits or open_splits(cache, config, in_memory)
    trial = TrialTraining(cache, config, run_dir, splits, cpu=cpu, log=log, report_to=report_to, on_epoch=on_epoch)
    epoch, finished = trial.states.take_up(), False
    while not finished:
        epoch += 1
        started = time.perf_counter()
        trial.start_epoch()
        for batch in trial.feed.batches(config.batch_size, trial.shuffle):
            trial.train_step(batch, epoch)
            if stop_requested():  # between two steps: the state kept at the last epoch's end is whole
                raise trial.states.stopped()
        trial.start_dev_pass(epoch)
        for batch in splits["dev"].batches(config.batch_size):  # fixed consecutive batches
            trial.dev_batch(batch)
        finished = trial.end_epoch(epoch, time.perf_counter() - started)
        if not finished:
            trial.states.keep(epoch)
            if stop_requested():
                raise trial.states.stopped()
    return trial.finish()


class TrialTraining:
    """One trial's training state (weights, optimiser, schedule, weight average, random streams, its run folder:
    runs/train/trial_run.py) and its moves: `train_step` per batch; at the epoch's end `start_dev_pass`,
    `dev_batch` per dev batch and `end_epoch` (selection, the log line, whether it is finished); `finish`. The loop
    of one trial (above) and interleaved trials (runs/train/interleaved_trials.py) drive the same objects, so a
    trial trains the same either way."""

    def __init__(
        self, cache, config: SPPSCLConfig, run_dir, splits: dict, *, cpu=False, log=None, report_to=(), on_epoch=None
    ):
        log = log or logger.info
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if "train" not in splits or "dev" not in splits:
            raise InputError(f"{cache} needs a train and a dev split to train and select on; it has {sorted(splits)}")
        if config.batch_size < 2:  # every batch would be skipped (below): an exit 0 that trained nothing
            raise InputError(
                f"batch size {config.batch_size} trains nothing: a batch of one record is skipped (BatchNorm needs 2); "
                "use --batch-size 2 or more"
            )
        train_split = splits["train"]
        if config.batch_size >= len(train_split):  # one step per epoch: on small data, a head that stays at chance
            logger.warning(
                f"batch size {config.batch_size} >= the {len(train_split)} training records: one step per epoch; "
                "use a smaller --batch-size"
            )
        # WORLD_SIZE: torchrun and accelerate launch set it in every process they start.
        processes = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if processes > 1:
            raise Refused(
                f"training runs in one process, but this is one of {processes} (accelerate launch or torchrun): "
                "run `spp-scl train` directly; to use several devices, run a sweep's trials side by side (--jobs)"
            )
        self.cache, self.config, self.splits = cache, config, splits
        self.trackers = trackers = trackers_for(cpu, report_to, run_dir)
        self.device = device = torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
        check_precision(config.precision, device)  # bfloat16 only where it is fast, float16 on a GPU

        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        self.model = model = build_head(config, head_shapes(train_split))
        attach_input_noise(model, config)  # training-mode noise on the cached inputs, when the config asks for it
        self.feed = TrainingFeed(
            train_split, config
        )  # clean features, or stored views drawn by a generator of the seed
        self.step = training_step_for(config)  # the head's own training step
        # The fused AdamW kernel: one pass over all parameters instead of a dozen per tensor (a sixth of the time on
        # a CPU); the same update to float32 rounding.
        self.optimizer = optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
            fused=device.type in ("cpu", "cuda"),
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step_size, gamma=config.lr_gamma
        )
        self.stepper = stepper = scaled_for(config.precision, optimizer, device)  # loss-scaled under float16
        self.backward = getattr(stepper, "backward", None)  # None: the step calls loss.backward() itself
        model.to(device)
        self.average = weight_average(model, config.weight_average)  # None unless asked for
        self.shuffle = torch.Generator().manual_seed(config.seed)

        tracker = (lambda line, epoch: trackers.log(tracker_values(line), step=epoch)) if trackers else None
        self.run = TrialRun(
            run_dir, cache, config, splits, model, device=device, log=log, on_epoch=on_epoch, tracker=tracker
        )
        if trackers:
            trackers.init_trackers(run_dir.name, config=tracker_config(config))
        # Ctrl-C or SIGTERM in `spp-scl train`: the state of the last finished epoch is saved, and a rerun resumes.
        not_resumable = "trackers" if trackers else "float16 loss scaling" if stepper is not optimizer else None
        parts = (model, self.optimizer, self.scheduler, self.average, self.shuffle, self.feed, self.run)
        self.states = EpochStates(run_dir, config, self.run.cache_fingerprint_sha256, device, parts, not_resumable, log)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def start_epoch(self) -> None:
        self.model.train()
        self.run.start_epoch()

    def train_step(self, batch, epoch: int, inputs: dict | None = None) -> None:
        """One iteration on `batch` (`inputs`: the batch already on the device, when a caller shares it)."""
        if len(batch) < 2:  # BatchNorm cannot normalise a batch of one in train mode
            return
        inputs = dict(inputs) if inputs is not None else self.feed.inputs(batch, self.device)
        with autocast(self.config.precision, self.device):
            report = self.step(self.model, inputs, self.stepper, self.config, backward=self.backward)
        try:
            self.run.add_step(report, len(batch), epoch, self.lr)
        except Diverged:
            check_batch_inputs(batch, "train", self.cache)  # a non-finite input is the cache's fault, not the rate's
            raise
        update_average(self.average, self.model)

    def start_dev_pass(self, epoch: int) -> None:
        """The epoch's training is over: non-finite weights are never selected, the schedule moves on, and the head
        that dev selection sees (the weights, or their average) goes into eval mode for `dev_batch`."""
        self.run.check_trained(epoch)  # before the schedule moves: it never moves without a step
        self.epoch_lr = self.lr
        check_weights(self.model, epoch, self.epoch_lr)
        self.scheduler.step()
        self.evaluated = evaluated_head(self.model, self.average).eval()
        self.dev_probabilities, self.dev_layer_weights = [], []

    def dev_batch(self, batch) -> None:
        """One batch of the dev pass, in the dev split's fixed consecutive batches."""
        with autocast(self.config.precision, self.device):
            probabilities = batch_probabilities(self.evaluated, batch, self.device, self.dev_layer_weights)
        self.dev_probabilities.append(probabilities)

    def end_epoch(self, epoch: int, seconds: float) -> bool:
        """The dev metrics, selection and log line of the epoch (`seconds` of it, dev pass included); whether the
        trial is finished."""
        evaluated, probabilities = self.evaluated, np.concatenate(self.dev_probabilities)
        return self.run.end_epoch(
            epoch, self.epoch_lr, probabilities, self.dev_layer_weights, seconds, lambda head=evaluated: head
        )

    def finish(self) -> TrainResult:
        result = self.run.finish()
        if self.trackers:
            self.trackers.log(
                {
                    f"selected/{split}_{key}": result.metrics[split][key]
                    for split in ("dev", "test")
                    if split in result.metrics
                    for key in ("accuracy", "f1_weighted", "f1_macro")
                },
                step=result.epochs_run,
            )
            self.trackers.end_training()
        return result
