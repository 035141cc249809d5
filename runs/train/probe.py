"""Fit the linear probe (heads/probe.py) from a cache and write a run folder like any trained head's.

The probe is the baseline every head must beat: what a logistic regression gets from the same frozen features,
pooled. For each C of `config.probe_cs` it fits an L2-regularised multinomial logistic regression (lbfgs, the
scikit-learn solver) on the standardised training features, scores dev, and keeps the C with the best dev
`config.selection_metric` (the smaller C on a tie). The fitted coefficients go into the head's linear layer, so the
run folder (config.json, log.jsonl with one line per C, model.safetensors + head.json, metrics.json,
predictions.csv) is served by `spp-scl predict` and read by sweeps, tables and the comparison like any other.
The fit is deterministic: seeds do not change it.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.runs.train.checkpoint import build_head, save_head
from spp_scl.runs.train.metrics import classification_metrics
from spp_scl.runs.train.trial_run import TrainResult, TrialRun, head_shapes

logger = logging.getLogger(__name__)


@torch.no_grad()
def pooled_features(model, split, batch_size: int = 256) -> np.ndarray:
    """[N, width] pooled features of a split, in its order (the probe's own pooling, before standardisation)."""
    parts = []
    for batch in split.batches(batch_size):
        parts.append(model.pooled(batch.image_maps, batch.token_states, batch.token_mask).numpy())
    return np.concatenate(parts).astype(np.float64)


def fit_logistic_regression(features: np.ndarray, labels: np.ndarray, c: float, num_classes: int, seed: int):
    """(weight [num_classes, width], bias [num_classes]) of the multinomial logistic regression at strength C.
    Two classes come back as one row from scikit-learn; the logits [0, w x + b] give the same probabilities."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the iteration cap is part of the method; logged below
        fitted = LogisticRegression(C=c, max_iter=2000, tol=1e-5, random_state=seed).fit(features, labels)
    present = list(fitted.classes_)
    weight = np.zeros((num_classes, features.shape[1]))
    bias = np.zeros(num_classes)
    if len(present) == 2:
        weight[present[1]], bias[present[1]] = fitted.coef_[0], fitted.intercept_[0]
        weight[present[0]], bias[present[0]] = 0.0, 0.0
    else:
        for row, label in enumerate(present):
            weight[label], bias[label] = fitted.coef_[row], fitted.intercept_[row]
        # A class absent from training never wins: a logit far below the others.
        for label in set(range(num_classes)) - set(present):
            bias[label] = -1e4
    return weight, bias


def fit_probe(
    cache: str | Path, config: SPPSCLConfig, run_dir: str | Path, *, splits: dict | None = None, log=None
) -> TrainResult:
    from spp_scl.runs.train.trainer import open_splits

    log = log or logger.info
    run_dir = Path(run_dir)
    splits = splits or open_splits(cache, config)
    if "train" not in splits or "dev" not in splits:
        raise ValueError(f"{cache} needs a train and a dev split to fit and select on; it has {sorted(splits)}")
    train_split, dev_split = splits["train"], splits["dev"]
    shapes = head_shapes(train_split)
    model = build_head(config, shapes).eval()
    run = TrialRun(run_dir, cache, config, splits, model, log=log)  # config.json; log.jsonl: a line per C
    train_x, dev_x = pooled_features(model, train_split), pooled_features(model, dev_split)
    # The authors' protocol picks C on the test split (optimistic); the others on dev (a fold's held-out part).
    chosen_split = splits["test"] if config.selection == "authors" and "test" in splits else dev_split
    chosen_x = pooled_features(model, chosen_split) if chosen_split is not dev_split else dev_x
    mean, scale = train_x.mean(0), train_x.std(0)
    scale[scale < 1e-6] = 1.0  # a constant feature stays constant (zero) instead of dividing by nothing
    train_z, dev_z, chosen_z = (train_x - mean) / scale, (dev_x - mean) / scale, (chosen_x - mean) / scale
    model.feature_mean.copy_(torch.from_numpy(mean))
    model.feature_scale.copy_(torch.from_numpy(scale))

    metric, best, best_index, seconds = config.selection_metric, None, 0, []
    for index, c in enumerate(config.probe_cs, 1):
        started = time.perf_counter()
        weight, bias = fit_logistic_regression(train_z, train_split.labels, c, shapes["num_classes"], config.seed)
        seconds.append(time.perf_counter() - started)
        train_pred = (train_z @ weight.T + bias).argmax(1)
        dev_pred = (dev_z @ weight.T + bias).argmax(1)
        train_metrics = classification_metrics(train_split.labels, train_pred, train_split.class_names)
        dev = classification_metrics(dev_split.labels, dev_pred, dev_split.class_names)
        chosen = classification_metrics(
            chosen_split.labels, (chosen_z @ weight.T + bias).argmax(1), dev_split.class_names
        )
        improved = best is None or chosen[metric] > best[0]
        if improved:
            best, best_index = (chosen[metric], weight, bias), index
        run.write_line(
            {
                "epoch": index,
                "probe_c": c,
                "train_accuracy": train_metrics["accuracy"],
                "dev_accuracy": dev["accuracy"],
                "dev_f1_weighted": dev["f1_weighted"],
                "dev_f1_macro": dev["f1_macro"],
                "selected": improved,
                "seconds": round(seconds[-1], 3),
            }
        )
        log(
            f"C {c:g}: train acc {train_metrics['accuracy']:.4f}  dev acc {dev['accuracy']:.4f} {metric} "
            f"{dev[metric]:.4f}  ({seconds[-1]:.1f}s)"
        )
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(best[1]))
        model.classifier.bias.copy_(torch.from_numpy(best[2]))
    save_head(run_dir, model, config, shapes)

    run.best_epoch, run.seconds = best_index, seconds
    return run.finish(extra_metrics={"probe_c": config.probe_cs[best_index - 1]})
