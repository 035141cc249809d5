"""Train many SPP-SCL trials in one pass: a group of trials that share an architecture is one stacked model
(heads/stacked/), and each trial ends with its own run folder, exactly as runs/trainer.train writes it.

The contract is equivalence: a trial trained in a group gives the weights, per-epoch dev metrics, two-step
decisions, selected epoch and predictions that it gives trained alone by spp_scl.runs.train.trainer.train (same seed), bit for
bit: the stacked head runs each trial's products with alone's kernels on alone's shapes (heads/stacked/), so
nothing is summed in another order (tests/test_grouped_trainer.py). How each random stream is kept:
- initial weights: per trial, the global generator is seeded with the trial's seed and build_head draws the
  weights, as train does;
- dropout masks: after build_head, train's only consumers of the global generator are the dropout masks of the
  forwards (with clean features and no input noise, which is what groups take). Each trial gets a generator
  holding the global state at that point, and draws its masks from it in its forward's order;
- data order: one shuffling generator per seed, seeded as train seeds it. Trials with the same seed read the same
  batches and share the gathered inputs; the trials of a stack are ordered by seed so that those sharing a
  batch are adjacent (a data group).
Per trial: tau, theta, lambda, lr (its own StepLR), weight decay, dropout, seed, epochs, patience, selection metric
and second_step_moves_all. A trial that stops (its epochs, its patience, or the caller's on_epoch) leaves the
stack; the others go on unchanged.

What fixes a group (group_key): the architecture fields, batch size, views and precision settings, AdamW's betas
and eps, and whether step two's forward runs. Only float32, clean-feature SPP-SCL training without input noise or
weight averaging is grouped, on the CPU; anything else trains alone (runs/trials/executor.py decides).

log.jsonl's "seconds" is the trial's share of the group's epoch (the group's wall time over its trials).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spp_scl.core.errors import Diverged, InputError
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.stacked.adamw import StackedAdamW
from spp_scl.heads.stacked.model import StackedSPPSCLHead
from spp_scl.heads.stacked.training_step import stacked_parameters_finite, stacked_spp_scl_step
from spp_scl.heads.training_step import inter_loss_enabled
from spp_scl.runs.train.checkpoint import build_head
from spp_scl.runs.train.divergence import check_weights
from spp_scl.runs.train.trainer import open_splits
from spp_scl.runs.train.trial_run import TrainResult, TrialRun, head_shapes
from spp_scl.runs.train.view_feed import feature_inputs

logger = logging.getLogger(__name__)

# The fields that fix a stacked model and what every trial of it shares per iteration.
GROUP_FIELDS = (
    "head",
    "embed_dim",
    "lstm_hidden",
    "image_reduced_channels",
    "fusion_hidden",
    "ha_gate",
    "text_pooling",
    "bank_size",
    "fusion",
    "modality",
    "text_layers_last",
    "batch_size",
    "train_views",
    "view_parts",
    "precision",
    "betas",
    "eps",
    "selection",  # trials of one group read one train split: one fold
    "folds",
    "fold",
)


def ungroupable_reason(config: SPPSCLConfig) -> str | None:
    """Why `config` trains alone, or None when the grouped trainer takes it."""
    if config.head != "spp-scl":
        return f"head {config.head!r} (only SPP-SCL heads are grouped)"
    if config.text_pooling != "lstm":
        return "the LSTM skip (text pooling lstm+mean)"
    if config.precision != "float32":
        return f"{config.precision} precision"
    if config.selection == "authors":
        return "the authors' selection (a test pass every 5 epochs)"
    if config.train_views != "clean":
        return "stored views"
    if config.input_dropout > 0 or config.input_noise > 0:
        return "input noise"
    if getattr(config, "weight_average", 0.0) > 0:
        return "weight averaging"
    if torch.cuda.is_available():
        return "a GPU (the grouped trainer reproduces the CPU's dropout masks)"
    return None


def group_key(config: SPPSCLConfig) -> str | None:
    """Trials with the same key train as one group; None for a config that trains alone."""
    if ungroupable_reason(config) is not None:
        return None
    values = {name: getattr(config, name) for name in GROUP_FIELDS}
    values["second_forward"] = config.two_step and inter_loss_enabled(config)
    return json.dumps(values, sort_keys=True, default=list)


@dataclass
class _Trial:
    """A trial of the group, as it trains: its run (runs/train/trial_run.py) and what the stack does not hold."""

    index: int  # its position in the caller's list
    config: SPPSCLConfig
    run: TrialRun
    model: SPPSCLHead  # the module its weights are exported into (checkpoints)
    schedule: torch.optim.lr_scheduler.StepLR  # on a stand-in optimiser: the trial's learning rate per epoch

    @property
    def lr(self) -> float:
        return self.schedule.optimizer.param_groups[0]["lr"]


def train_group(
    cache: str | Path,
    configs: list[SPPSCLConfig],
    run_dirs: list[str | Path],
    *,
    in_memory: bool | None = None,
    log=None,
    splits: dict | None = None,
    on_epoch=None,
    on_finish=None,
) -> list[TrainResult | Exception]:
    """Train `configs` (one group_key) as one group; trial i writes run_dirs[i]. Returns, per trial, its
    TrainResult, or the error that ended it (a Diverged trial leaves the group; the others go on).
    `on_epoch(i, epoch, dev_metrics) -> bool` is train's on_epoch for trial i (True stops that trial);
    `on_finish(i, result)` is called as soon as trial i is complete (its run folder written)."""
    log = log or logger.info
    keys = {group_key(config) for config in configs}
    if None in keys or len(keys) != 1:
        raise ValueError("train_group takes configs of one group_key (see ungroupable_reason)")
    splits = splits or open_splits(cache, configs[0], in_memory)
    if "train" not in splits or "dev" not in splits:
        raise InputError(f"{cache} needs a train and a dev split to train and select on; it has {sorted(splits)}")
    train_split, dev_split = splits["train"], splits["dev"]
    device = torch.device("cpu")
    shapes = head_shapes(train_split)

    trials, generators = [], []
    for index in sorted(range(len(configs)), key=lambda i: configs[i].seed):  # data groups are adjacent
        config = configs[index]
        torch.manual_seed(config.seed)  # as train: the weights, then the dropout masks, from this state
        np.random.seed(config.seed)
        model = build_head(config, shapes)
        generators.append(torch.Generator().set_state(torch.get_rng_state()))
        stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
        schedule = torch.optim.lr_scheduler.StepLR(stand_in, step_size=config.lr_step_size, gamma=config.lr_gamma)
        on_trial_epoch = None if on_epoch is None else functools.partial(on_epoch, index)
        run_dir = Path(run_dirs[index])
        run = TrialRun(run_dir, cache, config, splits, model, log=log, on_epoch=on_trial_epoch, label=run_dir.name)
        trials.append(_Trial(index, config, run, model, schedule))
    stacked = StackedSPPSCLHead([trial.model for trial in trials], generators)
    optimizer = StackedAdamW(
        stacked.parameters(),
        [t.config.lr for t in trials],
        [t.config.weight_decay for t in trials],
        configs[0].betas,
        configs[0].eps,
    )
    shuffles = {seed: torch.Generator().manual_seed(seed) for seed in sorted({c.seed for c in configs})}
    outcomes: dict[int, TrainResult | Exception] = {}

    def leave(gone: dict[int, Exception | None]) -> None:
        """Trials (by stack position) leave the stack; an error is their outcome."""
        nonlocal trials
        for position, error in gone.items():
            if error is not None:
                outcomes[trials[position].index] = error
        kept = [position for position in range(len(trials)) if position not in gone]
        stacked.keep(kept)
        optimizer.keep(kept, stacked.parameters())
        trials = [trials[position] for position in kept]

    epoch = 0
    while trials:
        epoch += 1
        started = time.perf_counter()
        stacked.train()
        optimizer.lrs = [trial.lr for trial in trials]  # each trial's StepLR learning rate for this epoch
        for trial in trials:
            trial.run.start_epoch()
        seeds = sorted({trial.config.seed for trial in trials})
        epoch_batches = {
            seed: train_split.batches(configs[0].batch_size, shuffle=True, generator=shuffles[seed], longest_first=True)
            for seed in seeds
        }
        for batches in zip(*epoch_batches.values()):
            if len(batches[0]) < 2:  # BatchNorm cannot normalise a batch of one in train mode
                continue
            by_seed = dict(zip(seeds, batches))
            groups = [(span, feature_inputs(by_seed[seed], device)) for seed, span in _data_groups(trials)]
            reports = stacked_spp_scl_step(stacked, groups, optimizer, [trial.config for trial in trials])
            diverged = {}
            for position, (trial, report) in enumerate(zip(trials, reports)):
                try:
                    trial.run.add_step(report, len(batches[0]), epoch, trial.lr)
                except Diverged as error:
                    diverged[position] = error
            if diverged:
                leave(diverged)
                if not trials:
                    break
        if not trials:
            break
        diverged = {}
        for position, finite in enumerate(stacked_parameters_finite(stacked)):
            if not finite:  # the error train raises, naming the weight
                try:
                    check_weights(stacked.export(position, trials[position].model), epoch, trials[position].lr)
                except Diverged as error:
                    diverged[position] = error
        if diverged:
            leave(diverged)
            if not trials:
                break
        lrs = [trial.lr for trial in trials]
        for trial in trials:
            trial.schedule.optimizer.step()  # nothing to move: keeps StepLR's order check quiet
            trial.schedule.step()
        probabilities, layer_weights = _dev_pass(stacked, dev_split, configs[0].batch_size, device)
        share = (time.perf_counter() - started) / len(trials)
        finished = {}
        for position, trial in enumerate(trials):
            weights = [] if layer_weights is None else [layer_weights[position]]
            export = functools.partial(stacked.export, position, trial.model)  # called when the epoch is selected
            if trial.run.end_epoch(epoch, lrs[position], probabilities[position], weights, share, export):
                finished[position] = None
        for position in finished:
            trial = trials[position]
            result = trial.run.finish()
            outcomes[trial.index] = result
            if on_finish is not None:
                on_finish(trial.index, result)
        if finished:
            leave(finished)
    return [outcomes[index] for index in range(len(configs))]


def _data_groups(trials: list[_Trial]) -> list[tuple[int, range]]:
    """(seed, stack positions) of each run of adjacent trials with one seed."""
    groups, start = [], 0
    for position in range(1, len(trials) + 1):
        if position == len(trials) or trials[position].config.seed != trials[start].config.seed:
            groups.append((trials[start].config.seed, range(start, position)))
            start = position
    return groups


@torch.no_grad()
def _dev_pass(stacked: StackedSPPSCLHead, split, batch_size: int, device) -> tuple[np.ndarray, np.ndarray | None]:
    """Every trial's dev probabilities [T, N, classes] (and HA layer weights [T, N, k]), in train's fixed
    consecutive batches."""
    stacked.eval()
    probabilities, layer_weights = [], []
    everyone = range(stacked.trials)
    for batch in split.batches(batch_size):
        outputs = stacked([(everyone, feature_inputs(batch, device))])
        probabilities.append(torch.softmax(outputs["logits"].float(), dim=2).numpy())
        if outputs["text_layer_weights"] is not None:
            layer_weights.append(outputs["text_layer_weights"].float().numpy())
    weights = np.concatenate(layer_weights, axis=1) if layer_weights else None
    return np.concatenate(probabilities, axis=1), weights
