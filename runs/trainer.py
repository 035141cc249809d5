"""Fit a head (config.head: SPP-SCL, CLMLF- or MDSE-style) from a feature cache alone (no encoder is ever loaded),
select on dev, write a run.

A run folder holds:
    config.json        the resolved config, the cache it trained on (path and fingerprint), versions
    log.jsonl          one line per epoch: losses, how often step two ran, learning rate, dev metrics, seconds
    model.safetensors  the selected weights, with head.json (config and shapes to rebuild the head)
    metrics.json       {"selected_epoch", "dev": {...}, "test": {...}}: accuracy, F1s, per class, confusion
    predictions.csv    split, id, label, prediction, one probability column per class, for dev and test
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cache.reader import CachedSplit
from heads.config import SPPSCLConfig
from heads.head_kinds import report_keys_for, training_step_for
from heads.input_noise import attach_input_noise
from heads.precision import autocast, check_precision
from runs.checkpoint import build_head, save_head
from runs.divergence import check_losses, check_weights
from runs.metrics import classification_metrics
from runs.view_feed import TrainingFeed
from runs.weight_average import evaluated_head, update_average, weight_average
from spp_scl.allocator import keep_freed_memory
from spp_scl.errors import InputError, Refused

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    selected_epoch: int
    epochs_run: int
    seconds_per_epoch: float


def open_splits(cache: str | Path, config: SPPSCLConfig, in_memory: bool | None = None) -> dict[str, CachedSplit]:
    """The cache's splits, reading only the text layers the config uses (the last k of those cached). Batches keep
    the tokens in the cache's dtype (float16): the heads widen only the tokens they read. Every training path opens
    its splits here, so this is also where the process starts reusing freed memory (spp_scl/allocator.py)."""
    from cache.layout import open_cache

    keep_freed_memory()

    with open_cache(cache) as file:
        present = [split for split in ("train", "dev", "test") if split in file and len(file[split]["ids"])]
    layers = list(range(-config.text_layers_last, 0)) if config.text_layers_last else None
    return {split: CachedSplit(cache, split, layers=layers, in_memory=in_memory, token_dtype=None) for split in present}


def head_shapes(split: CachedSplit) -> dict:
    return {
        "image_channels": split.map_shape[0],
        "text_dim": split.text_dim,
        "num_layers": len(split.layers),
        "num_classes": split.num_classes,
        "class_names": split.class_names,
        "text_layers": split.layers,
    }


def _inputs(batch, device) -> dict:
    batch = batch.to(device)
    return {
        "image_maps": batch.image_maps,
        "first_token": batch.first_token,
        "token_states": batch.token_states,
        "token_mask": batch.token_mask,
        "labels": batch.labels,
    }


@torch.no_grad()
def predict(
    model: nn.Module, split: CachedSplit, batch_size: int, device, layer_weights: list | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, labels, class probabilities) in the split's order, in consecutive batches of `batch_size`:
    fixed batches, so that even the batch-dependent "cmf-batch" fusion gives reproducible predictions.
    `layer_weights`, a list, receives the HA layer weights [B, k] of each batch when the head has them."""
    model.eval()
    ids, probabilities = [], []
    for batch in split.batches(batch_size):
        inputs = _inputs(batch, device)
        inputs.pop("labels")
        outputs = model(**inputs)
        probabilities.append(torch.softmax(outputs["logits"].float(), dim=1).cpu().numpy())
        if layer_weights is not None and outputs.get("text_layer_weights") is not None:
            layer_weights.append(outputs["text_layer_weights"].float().cpu().numpy())
        ids.extend(batch.ids)
    return ids, split.labels.copy(), np.concatenate(probabilities)


# The two-step rule's quantities, averaged over the iterations in which the rule was evaluated.
RULE_KEYS = {
    "below_mean_count": "rule_c",
    "same_label_pairs": "rule_P",
    "rule_m": "rule_m",
    "rule_saturated": "rule_saturated",
}


def epoch_diagnostics(reports: dict, layer_weights: list) -> dict:
    """What log.jsonl records besides the losses: running train accuracy (train mode, step one's forward), the
    rule's c, P, c / P, m and saturated share of S, and the HA layer weights over dev (mean and spread)."""
    line = {}
    if reports.get("samples"):
        line["train_accuracy"] = reports["train_correct"] / reports["samples"]
    checked = reports.get("rule_checked", 0.0)
    if checked:
        line.update({name: reports[key] / checked for key, name in RULE_KEYS.items()})
        line["rule_c_over_P"] = line["rule_c"] / max(line["rule_P"], 1e-12)
    if layer_weights:
        weights = np.concatenate(layer_weights)
        line["ha_weight_mean"] = [round(float(x), 6) for x in weights.mean(0)]
        line["ha_weight_std"] = [round(float(x), 6) for x in weights.std(0)]
    return line


def write_predictions(path: Path, rows: dict[str, tuple], class_names: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "id", "label", "prediction", *[f"p_{name}" for name in class_names]])
        for split, (ids, labels, probabilities) in rows.items():
            for record_id, label, p in zip(ids, labels, probabilities):
                writer.writerow(
                    [
                        split,
                        record_id,
                        class_names[label],
                        class_names[int(p.argmax())],
                        *[f"{value:.6f}" for value in p],
                    ]
                )


def write_run_config(
    run_dir: Path, cache, config: SPPSCLConfig, train_split: CachedSplit, model: nn.Module, mixed_precision, device
) -> None:
    """config.json: the resolved config, the cache (path and fingerprint), the head's shapes, the environment."""
    record = {
        "config": config.to_dict(),
        "cache": str(Path(cache).resolve()),
        "cache_fingerprint": train_split.attrs["fingerprint"],
        "head": head_shapes(train_split),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "mixed_precision": mixed_precision,
        "device": str(device),
        "environment": environment(),
    }
    (run_dir / "config.json").write_text(json.dumps(record, indent=1))


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


def environment() -> dict:
    import accelerate
    import transformers

    return {
        "torch": torch.__version__,
        "accelerate": accelerate.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
    }


def train(
    cache: str | Path,
    config: SPPSCLConfig,
    run_dir: str | Path,
    *,
    mixed_precision: str = "no",
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
    under `accelerate launch` with several processes it refuses rather than train the same run N times."""
    if config.head == "probe":  # fitted in closed form, not by gradient steps
        from runs.probe import fit_probe

        return fit_probe(cache, config, run_dir, splits=splits, log=log)
    from accelerate import Accelerator

    log = log or logger.info

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    splits = splits or open_splits(cache, config, in_memory)
    if "train" not in splits or "dev" not in splits:
        raise InputError(f"{cache} needs a train and a dev split to train and select on; it has {sorted(splits)}")
    train_split, dev_split = splits["train"], splits["dev"]
    accelerator = Accelerator(
        cpu=cpu, mixed_precision=mixed_precision, log_with=list(report_to) or None, project_dir=run_dir / "trackers"
    )
    # WORLD_SIZE as well: on a CPU-only machine Accelerate treats a torchrun / accelerate launch process as single.
    processes = max(accelerator.num_processes, int(os.environ.get("WORLD_SIZE", "1") or 1))
    if processes > 1:
        raise Refused(
            f"training runs in one process, but this is one of {processes} (accelerate launch or torchrun): "
            "run `spp-scl train` directly; to use several devices, run a sweep's trials side by side (--jobs)"
        )
    device = accelerator.device
    check_precision(config.precision, device)  # bfloat16 only where it is fast

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    shapes = head_shapes(train_split)
    model = build_head(config, shapes)
    attach_input_noise(model, config)  # training-mode noise on the cached inputs, when the config asks for it
    feed = TrainingFeed(train_split, config)  # clean features, or stored views drawn by a generator of the seed
    step, loss_keys = training_step_for(config), report_keys_for(config)  # the head's own step and losses
    # The fused AdamW kernel: one pass over all parameters instead of a dozen per tensor (a sixth of the time on a
    # CPU); the same update to float32 rounding.
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_size, gamma=config.lr_gamma)
    model, optimizer = accelerator.prepare(model, optimizer)
    average = weight_average(accelerator.unwrap_model(model), config.weight_average)  # None unless asked for
    shuffle = torch.Generator().manual_seed(config.seed)

    write_run_config(run_dir, cache, config, train_split, model, mixed_precision, device)
    log_path = run_dir / "log.jsonl"
    log_path.write_text("")
    if report_to:
        accelerator.init_trackers(run_dir.name, config=tracker_config(config))
    metric = config.selection_metric
    best, best_epoch, epoch, seconds = -1.0, 0, 0, []
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        sums, steps = dict.fromkeys(loss_keys, 0.0), 0
        diagnostics = dict.fromkeys(("samples", "train_correct", "rule_checked", *RULE_KEYS), 0.0)
        for batch in feed.batches(config.batch_size, shuffle):
            if len(batch) < 2:  # BatchNorm cannot normalise a batch of one in train mode
                continue
            with accelerator.autocast(), autocast(config.precision, device):
                report = step(model, feed.inputs(batch, device), optimizer, config, backward=accelerator.backward)
            check_losses(report, loss_keys, epoch, steps + 1, optimizer.param_groups[0]["lr"])
            update_average(average, accelerator.unwrap_model(model))
            for key in loss_keys:
                sums[key] += report[key]
            diagnostics["samples"] += len(batch)
            for key in diagnostics.keys() & report.keys():
                diagnostics[key] += report[key]
            steps += 1
        lr = optimizer.param_groups[0]["lr"]
        check_weights(model, epoch, lr)  # before the dev pass: non-finite weights are never selected
        scheduler.step()
        evaluated = evaluated_head(accelerator.unwrap_model(model), average)
        layer_weights = []
        with autocast(config.precision, device):
            ids, labels, probabilities = predict(evaluated, dev_split, config.batch_size, device, layer_weights)
        dev = classification_metrics(labels, probabilities.argmax(1), dev_split.class_names)
        seconds.append(time.perf_counter() - started)
        improved = dev[metric] > best
        if improved:
            best, best_epoch = dev[metric], epoch
            save_head(run_dir, evaluated, config, shapes)
        line = {
            "epoch": epoch,
            "lr": lr,
            **{k: sums[k] / max(steps, 1) for k in loss_keys},
            "dev_accuracy": dev["accuracy"],
            "dev_f1_weighted": dev["f1_weighted"],
            "dev_f1_macro": dev["f1_macro"],
            **epoch_diagnostics(diagnostics, layer_weights),
            "selected": improved,
            "seconds": round(seconds[-1], 3),
        }
        line["step_two_rate"] = line.pop("step_two_ran")
        with log_path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        if report_to:
            accelerator.log(tracker_values(line), step=epoch)
        log(
            f"epoch {epoch:3d}/{config.epochs}  loss {line['loss_step_one']:.3f}  step two {line['step_two_rate']:.0%}  "
            f"dev acc {dev['accuracy']:.4f} {metric} {dev[metric]:.4f}  (best {best:.4f} @ {best_epoch})  "
            f"{seconds[-1]:.1f}s"
        )
        if config.patience is not None and epoch - best_epoch >= config.patience:
            log(f"early stop: no better dev {metric} for {config.patience} epochs")
            break
        if on_epoch is not None and on_epoch(epoch, dev):
            log(f"stopped after epoch {epoch} by the caller (a sweep's pruner)")
            break

    from runs.checkpoint import load_head

    selected, _, _ = load_head(run_dir, device)
    rows, metrics = {}, {"selected_epoch": best_epoch, "selection_metric": metric}
    for name in ("dev", "test"):
        if name in splits:
            with autocast(config.precision, device):  # as on the dev passes that selected it
                rows[name] = predict(selected, splits[name], config.batch_size, device)
            metrics[name] = classification_metrics(rows[name][1], rows[name][2].argmax(1), train_split.class_names)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    write_predictions(run_dir / "predictions.csv", rows, train_split.class_names)
    if report_to:
        accelerator.log(
            {
                f"selected/{split}_{key}": metrics[split][key]
                for split in ("dev", "test")
                if split in metrics
                for key in ("accuracy", "f1_weighted", "f1_macro")
            },
            step=epoch,
        )
        accelerator.end_training()
    return TrainResult(run_dir, metrics, best_epoch, epoch, float(np.mean(seconds)) if seconds else 0.0)
