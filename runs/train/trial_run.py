"""One trial as it trains: its run folder, its running sums, its dev selection, its finish.

Every way of training a head goes through this: the trainer's TrialTraining (runs/train/trainer.py: alone or
interleaved) and the closed-form probe (runs/train/probe.py) each build a TrialRun and call it in the same order:

    run = TrialRun(run_dir, cache, config, splits, model, log=...)   # config.json, an empty log.jsonl
    run.start_epoch()                                                 # per epoch: the sums start at zero
    run.add_step(report, batch_size, epoch, lr)                       # per iteration: losses checked and summed
    finished = run.end_epoch(epoch, lr, dev_probabilities, ...)       # dev metrics, selection, the log line
    result = run.finish()                                             # the selected head on dev and test

A run folder holds:
    config.json        the resolved config, the cache it trained on (path, fingerprint and its sha256), versions
    log.jsonl          one line per epoch: losses, how often step two ran, learning rate, dev metrics, seconds
    model.safetensors  the selected weights, with head.json (config and shapes to rebuild the head)
    metrics.json       {"selected_epoch", "dev": {...}, "test": {...}}: accuracy, F1s, per class, confusion
    predictions.csv    split, id, label, prediction, one probability column per class, for dev and test
    finished.json      the sha256 of the weights, head.json and metrics.json the training finished with

A run is finished when metrics.json is there: a TrialRun removes it (and the other results) before it writes
anything, and writes it last (runs/train/finished_run.py), so predict and report never take a stopped, failed or
half-rewritten folder for a result.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spp_scl.cache.reader import CachedSplit
from spp_scl.core.errors import InputError
from spp_scl.extract.fingerprint import sha256_json
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.head_kinds import report_keys_for
from spp_scl.heads.precision import autocast
from spp_scl.runs.train.checkpoint import load_head, save_head
from spp_scl.runs.train.divergence import check_losses
from spp_scl.runs.train.finished_run import clear_finished, write_metrics_last
from spp_scl.runs.train.metrics import classification_metrics
from spp_scl.runs.train.non_finite import check_probabilities
from spp_scl.runs.train.resume import discard as discard_resume_state
from spp_scl.runs.train.view_feed import feature_inputs

logger = logging.getLogger(__name__)

AUTHORS_EVERY = 5  # the authors' code saves a checkpoint every 5 epochs and reports a hand-picked one

# The two-step rule's quantities, averaged over the iterations in which the rule was evaluated.
RULE_KEYS = {
    "below_mean_count": "rule_c",
    "same_label_pairs": "rule_P",
    "rule_m": "rule_m",
    "rule_saturated": "rule_saturated",
}


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    selected_epoch: int
    epochs_run: int
    seconds_per_epoch: float


class TrialRun:
    """One trial's state besides its weights: the run folder it writes, the sums of the epoch under way, the best
    dev value so far. `on_epoch(epoch, dev_metrics) -> bool` is the caller's hook after each dev pass (a sweep's
    pruner): True finishes the trial as patience does. `tracker(line, epoch)` gets every log line (trackers)."""

    def __init__(
        self,
        run_dir: str | Path,
        cache: str | Path,
        config: SPPSCLConfig,
        splits: dict[str, CachedSplit],
        model: nn.Module,
        *,
        device="cpu",
        log: Callable[[str], None] | None = None,
        on_epoch: Callable[[int, dict], bool] | None = None,
        tracker: Callable[[dict, int], None] | None = None,
        label: str = "",
    ):
        self.run_dir, self.config, self.splits = Path(run_dir), config, splits
        self.device, self.log, self.on_epoch, self.tracker = torch.device(device), log or logger.info, on_epoch, tracker
        self.prefix = f"{label}: " if label else ""
        self.shapes = head_shapes(splits["train"])
        self.loss_keys = report_keys_for(config)
        self.best, self.best_epoch, self.seconds, self.epochs_run = -1.0, 0, [], 0
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cache = cache
        clear_finished(self.run_dir)  # before anything else changes: never finished while it is being rewritten
        write_run_config(self.run_dir, cache, config, splits["train"], model, self.device)
        self.cache_fingerprint_sha256 = sha256_json(splits["train"].attrs["fingerprint"])
        self.log_path = self.run_dir / "log.jsonl"
        self.log_path.write_text("")
        self.start_epoch()

    def start_epoch(self) -> None:
        self.sums, self.steps = dict.fromkeys(self.loss_keys, 0.0), 0
        self.diagnostics = dict.fromkeys(("samples", "train_correct", "rule_checked", *RULE_KEYS), 0.0)

    def add_step(self, report: dict, batch_size: int, epoch: int, lr: float) -> None:
        """One iteration's report: a non-finite loss raises Diverged (naming epoch, step and rate), else summed."""
        check_losses(report, self.loss_keys, epoch, self.steps + 1, lr)
        for key in self.loss_keys:
            self.sums[key] += report[key]
        self.diagnostics["samples"] += batch_size
        for key in self.diagnostics.keys() & report.keys():
            self.diagnostics[key] += report[key]
        self.steps += 1

    def check_trained(self, epoch: int) -> None:
        """Every batch of the epoch skipped means nothing trained, and an exit 0 would say it did: an error."""
        if not self.steps:
            raise InputError(
                f"epoch {epoch} trained nothing: no batch of the {len(self.splits['train'])} training records had "
                f"2 or more records (batch size {self.config.batch_size}; BatchNorm needs 2): use --batch-size 2 "
                "or more"
            )

    def write_line(self, line: dict) -> None:
        """One epoch's line of log.jsonl (and of the trackers); its epoch is the last one run."""
        self.epochs_run = line["epoch"]
        with self.log_path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        if self.tracker is not None:
            self.tracker(line, line["epoch"])

    def end_epoch(
        self,
        epoch: int,
        lr: float,
        dev_probabilities: np.ndarray,
        layer_weights: list[np.ndarray],
        seconds: float,
        selected_head: Callable[[], nn.Module],
    ) -> bool:
        """The dev metrics of the epoch's weights, the checkpoint when they are the best so far (`selected_head()`
        gives the module to save), the log line; whether the trial is finished: patience, then the caller's hook
        (told of the last epoch too), then the last epoch."""
        config, metric, dev_split = self.config, self.config.selection_metric, self.splits["dev"]
        self.check_trained(epoch)
        check_probabilities(dev_probabilities, dev_split, "dev", self.cache, epoch)  # never counted when not finite
        dev = classification_metrics(dev_split.labels, dev_probabilities.argmax(1), dev_split.class_names)
        self.seconds.append(seconds)
        score = dev[metric] if config.selection != "authors" else self._authors_score(epoch, selected_head)
        improved = score is not None and score > self.best
        if improved:
            self.best, self.best_epoch = score, epoch
            save_head(self.run_dir, selected_head(), config, self.shapes)
        line = {
            "epoch": epoch,
            "lr": lr,
            **{key: self.sums[key] / max(self.steps, 1) for key in self.loss_keys},
            "dev_accuracy": dev["accuracy"],
            "dev_f1_weighted": dev["f1_weighted"],
            "dev_f1_macro": dev["f1_macro"],
            **epoch_diagnostics(self.diagnostics, layer_weights),
            "selected": improved,
            "seconds": round(seconds, 3),
        }
        line["step_two_rate"] = line.pop("step_two_ran")
        self.write_line(line)
        self.log(
            f"{self.prefix}epoch {epoch:3d}/{config.epochs}  loss {line['loss_step_one']:.3f}  "
            f"step two {line['step_two_rate']:.0%}  dev acc {dev['accuracy']:.4f} {metric} {dev[metric]:.4f}  "
            f"(best {self.best:.4f} @ {self.best_epoch})  {seconds:.1f}s"
        )
        # The authors train every epoch (no patience); patience stops the other protocols.
        if config.patience is not None and config.selection != "authors" and epoch - self.best_epoch >= config.patience:
            self.log(f"{self.prefix}early stop: no better dev {metric} for {config.patience} epochs")
            return True
        if self.on_epoch is not None and self.on_epoch(epoch, dev):
            self.log(f"{self.prefix}stopped after epoch {epoch} by the caller (a sweep's pruner)")
            return True
        return epoch >= config.epochs

    def _authors_score(self, epoch: int, selected_head: Callable[[], nn.Module]) -> float | None:
        """The authors' protocol (config.selection "authors"): a checkpoint every AUTHORS_EVERY epochs, scored on
        the TEST split; None between checkpoints. Optimistic by construction: it selects on the split it reports."""
        if "test" not in self.splits:
            raise InputError(f"{self.cache}: selection authors picks its checkpoint on the test split; there is none")
        if epoch % AUTHORS_EVERY and epoch < self.config.epochs:
            return None
        with autocast(self.config.precision, self.device):
            _, labels, probabilities = predict(
                selected_head(), self.splits["test"], self.config.batch_size, self.device
            )
        check_probabilities(probabilities, self.splits["test"], "test", self.cache, epoch)
        test = classification_metrics(labels, probabilities.argmax(1), self.splits["test"].class_names)
        return test[self.config.selection_metric]

    def finish(self, extra_metrics: dict | None = None) -> TrainResult:
        """The selected checkpoint, read back from the run folder, on dev and test: metrics.json and predictions.csv.
        In float32 whatever the training precision, as `spp-scl predict` and `evaluate` compute them on any device:
        a bfloat16 run's epochs (log.jsonl, the selection) ran under autocast, its saved weights are float32."""
        config, class_names = self.config, self.splits["train"].class_names
        selected, _, _ = load_head(self.run_dir, self.device)
        rows = {}
        metrics = {"selected_epoch": self.best_epoch, "selection_metric": config.selection_metric}
        if config.selection != "dev":  # the protocol beside the numbers (authors: selected on test, optimistic)
            metrics["selection"] = config.selection
        metrics.update(extra_metrics or {})
        for name in ("dev", "test"):
            if name in self.splits:
                rows[name] = predict(selected, self.splits[name], config.batch_size, self.device)
                check_probabilities(rows[name][2], self.splits[name], name, self.cache, None)
                metrics[name] = classification_metrics(rows[name][1], rows[name][2].argmax(1), class_names)
        write_predictions(self.run_dir / "predictions.csv", rows, class_names)
        # metrics.json last: the folder is finished from then on (runs/train/finished_run.py)
        write_metrics_last(self.run_dir, json.dumps(metrics, indent=1), self.best_epoch, self.epochs_run)
        discard_resume_state(self.run_dir)
        seconds = float(np.mean(self.seconds)) if self.seconds else 0.0
        return TrainResult(self.run_dir, metrics, self.best_epoch, self.epochs_run, seconds)


def head_shapes(split: CachedSplit) -> dict:
    return {
        "image_channels": split.map_shape[0],
        "text_dim": split.text_dim,
        "num_layers": len(split.layers),
        "num_classes": split.num_classes,
        "class_names": split.class_names,
        "text_layers": split.layers,
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
        probabilities.append(batch_probabilities(model, batch, device, layer_weights))
        ids.extend(batch.ids)
    return ids, split.labels.copy(), np.concatenate(probabilities)


@torch.no_grad()
def batch_probabilities(model: nn.Module, batch, device, layer_weights: list | None = None) -> np.ndarray:
    """One batch's class probabilities from `model` (in eval mode); its HA layer weights appended to
    `layer_weights` when the head has them."""
    inputs = feature_inputs(batch, device)
    inputs.pop("labels")
    outputs = model(**inputs)
    if layer_weights is not None and outputs.get("text_layer_weights") is not None:
        layer_weights.append(outputs["text_layer_weights"].float().cpu().numpy())
    return torch.softmax(outputs["logits"].float(), dim=1).cpu().numpy()


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
                prediction = class_names[int(p.argmax())]
                writer.writerow([split, record_id, class_names[label], prediction, *[f"{value:.6f}" for value in p]])


def write_run_config(
    run_dir: Path, cache, config: SPPSCLConfig, train_split: CachedSplit, model: nn.Module, device
) -> None:
    """config.json: the resolved config, the cache (path and fingerprint), the head's shapes, the environment."""
    provenance = train_split.attrs.get("provenance")
    provenance = provenance if isinstance(provenance, dict) else {}
    record = {
        "config": config.to_dict(),
        "cache": str(Path(cache).resolve()),
        # Where the cache is from the run folder: found again when the two move together (RunFolder).
        "cache_relative": os.path.relpath(Path(cache).resolve(), Path(run_dir).resolve()),
        # Where the encoders were loaded from, so that predict needs the run folder alone (checked against the
        # fingerprint's weight hashes before use).
        "encoders": {"text": provenance.get("text_encoder"), "image": provenance.get("image_encoder")},
        "command": shlex.join([command_name(sys.argv[0]), *sys.argv[1:]]),
        "cache_fingerprint": train_split.attrs["fingerprint"],
        # What predict and report check the field against: an edited fingerprint would change preprocessing.
        "cache_fingerprint_sha256": sha256_json(train_split.attrs["fingerprint"]),
        "head": head_shapes(train_split),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "device": str(device),
        "environment": environment(),
    }
    (run_dir / "config.json").write_text(json.dumps(record, indent=1))


def command_name(argv0: str) -> str:
    """The program as a user types it: `python -m spp_scl` and the console script are both `spp-scl`."""
    path = Path(argv0)
    return "spp-scl" if path.name == "spp-scl" or path.parent.name == "spp_scl" else path.name


def environment() -> dict:
    """The versions a run was made with; transformers and accelerate where installed (training needs neither)."""
    versions = {"torch": torch.__version__}
    for name in ("accelerate", "transformers"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    versions["python"] = sys.version.split()[0]
    return versions
