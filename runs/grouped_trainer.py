"""Train many SPP-SCL trials in one pass: a group of trials that share an architecture is one stacked model
(heads/stacked/), and each trial ends with its own run folder, exactly as runs/trainer.train writes it.

The contract is equivalence: a trial trained in a group gives the weights, per-epoch dev metrics, two-step
decisions, selected epoch and predictions that it gives trained alone by runs.trainer.train (same seed), bit for
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
weight averaging is grouped, on the CPU; anything else trains alone (runs/trials.py decides).

log.jsonl's "seconds" is the trial's share of the group's epoch (the group's wall time over its trials).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from heads.config import SPPSCLConfig
from heads.head_kinds import report_keys_for
from heads.model import SPPSCLHead
from heads.precision import autocast
from heads.stacked.adamw import StackedAdamW
from heads.stacked.model import StackedSPPSCLHead
from heads.stacked.training_step import stacked_parameters_finite, stacked_spp_scl_step
from heads.training_step import inter_loss_enabled
from runs.checkpoint import build_head, load_head, save_head
from runs.divergence import check_losses, check_weights
from runs.metrics import classification_metrics
from runs.trainer import (
    RULE_KEYS,
    TrainResult,
    epoch_diagnostics,
    head_shapes,
    open_splits,
    predict,
    write_predictions,
    write_run_config,
)
from runs.view_feed import feature_inputs
from spp_scl.errors import Diverged, InputError

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
)


def ungroupable_reason(config: SPPSCLConfig) -> str | None:
    """Why `config` trains alone, or None when the grouped trainer takes it."""
    if config.head != "spp-scl":
        return f"head {config.head!r} (only SPP-SCL heads are grouped)"
    if config.text_pooling != "lstm":
        return "the LSTM skip (text pooling lstm+mean)"
    if config.precision != "float32":
        return "bfloat16 precision"
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
    """A trial of the group, as it trains: its own state besides the stacked tensors."""

    index: int  # its position in the caller's list
    config: SPPSCLConfig
    run_dir: Path
    model: SPPSCLHead  # the module its weights are exported into (checkpoints)
    schedule: torch.optim.lr_scheduler.StepLR  # on a stand-in optimiser: the trial's learning rate per epoch
    best: float = -1.0
    best_epoch: int = 0
    seconds: list = field(default_factory=list)
    sums: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    steps: int = 0

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
        run_dir = Path(run_dirs[index])
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(run_dir, cache, config, train_split, model, "no", device)
        (run_dir / "log.jsonl").write_text("")
        trials.append(_Trial(index, config, run_dir, model, schedule))
    stacked = StackedSPPSCLHead([trial.model for trial in trials], generators)
    optimizer = StackedAdamW(
        stacked.parameters(),
        [t.config.lr for t in trials],
        [t.config.weight_decay for t in trials],
        configs[0].betas,
        configs[0].eps,
    )
    shuffles = {seed: torch.Generator().manual_seed(seed) for seed in sorted({c.seed for c in configs})}
    loss_keys = report_keys_for(configs[0])
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
            trial.sums, trial.steps = dict.fromkeys(loss_keys, 0.0), 0
            trial.diagnostics = dict.fromkeys(("samples", "train_correct", "rule_checked", *RULE_KEYS), 0.0)
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
                    check_losses(report, loss_keys, epoch, trial.steps + 1, trial.lr)
                except Diverged as error:
                    diverged[position] = error
                    continue
                for key in loss_keys:
                    trial.sums[key] += report[key]
                trial.diagnostics["samples"] += len(batches[0])
                for key in trial.diagnostics.keys() & report.keys():
                    trial.diagnostics[key] += report[key]
                trial.steps += 1
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
            if _end_epoch(
                trial,
                position,
                epoch,
                lrs[position],
                share,
                stacked,
                dev_split,
                probabilities,
                layer_weights,
                shapes,
                log,
                on_epoch,
            ):
                finished[position] = None
        for position in finished:
            trial = trials[position]
            result = _finish(trial, splits, train_split, epoch, device)
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


def _end_epoch(
    trial, position, epoch, lr, seconds, stacked, dev_split, probabilities, layer_weights, shapes, log, on_epoch
) -> bool:
    """train's end of an epoch for one trial: dev metrics, selection and checkpoint, its log line; whether the
    trial is finished."""
    config, metric = trial.config, trial.config.selection_metric
    dev = classification_metrics(dev_split.labels, probabilities[position].argmax(1), dev_split.class_names)
    trial.seconds.append(seconds)
    improved = dev[metric] > trial.best
    if improved:
        trial.best, trial.best_epoch = dev[metric], epoch
        save_head(trial.run_dir, stacked.export(position, trial.model), config, shapes)
    weights = [] if layer_weights is None else [layer_weights[position]]
    line = {
        "epoch": epoch,
        "lr": lr,
        **{k: trial.sums[k] / max(trial.steps, 1) for k in trial.sums},
        "dev_accuracy": dev["accuracy"],
        "dev_f1_weighted": dev["f1_weighted"],
        "dev_f1_macro": dev["f1_macro"],
        **epoch_diagnostics(trial.diagnostics, weights),
        "selected": improved,
        "seconds": round(seconds, 3),
    }
    line["step_two_rate"] = line.pop("step_two_ran")
    with (trial.run_dir / "log.jsonl").open("a") as handle:
        handle.write(json.dumps(line) + "\n")
    log(
        f"{trial.run_dir.name} epoch {epoch:3d}/{config.epochs}  loss {line['loss_step_one']:.3f}  "
        f"step two {line['step_two_rate']:.0%}  dev acc {dev['accuracy']:.4f} {metric} {dev[metric]:.4f}  "
        f"(best {trial.best:.4f} @ {trial.best_epoch})"
    )
    # In train's order: patience, then the caller (told of the last epoch too), then the last epoch.
    if config.patience is not None and epoch - trial.best_epoch >= config.patience:
        log(f"{trial.run_dir.name}: early stop: no better dev {metric} for {config.patience} epochs")
        return True
    if on_epoch is not None and on_epoch(trial.index, epoch, dev):
        log(f"{trial.run_dir.name}: stopped after epoch {epoch} by the caller (a sweep's pruner)")
        return True
    return epoch >= config.epochs


def _finish(trial: _Trial, splits: dict, train_split, epoch: int, device) -> TrainResult:
    """train's last part: the selected checkpoint evaluated on dev and test, metrics.json and predictions.csv."""
    config = trial.config
    selected, _, _ = load_head(trial.run_dir, device)
    rows, metrics = {}, {"selected_epoch": trial.best_epoch, "selection_metric": config.selection_metric}
    for name in ("dev", "test"):
        if name in splits:
            with autocast(config.precision, device):
                rows[name] = predict(selected, splits[name], config.batch_size, device)
            metrics[name] = classification_metrics(rows[name][1], rows[name][2].argmax(1), train_split.class_names)
    (trial.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    write_predictions(trial.run_dir / "predictions.csv", rows, train_split.class_names)
    return TrainResult(trial.run_dir, metrics, trial.best_epoch, epoch, float(np.mean(trial.seconds)))
