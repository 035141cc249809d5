"""Rows of trials (one name, several seeds) as every table and summary reports them, and the paired tests between
rows, from results rows (spp_scl.runs.trials.executor.result_row) and the run folders they name.

A results row holds the headline metrics (accuracy, weighted and macro F1); per-class F1 and the confusion matrix
(for the collapse flag) come from the run folder's metrics.json, and the per-item predictions (for the test over
items) from its predictions.csv. Where a run folder is gone, those parts are None and the test over items says so.
Run folders are only read: nothing here writes into them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from spp_scl.runs.train.metrics import classification_metrics
from spp_scl.runs.trials.statistics import (
    ITEM_TEST,
    collapse_reason,
    describe,
    ensemble_predictions,
    mcnemar_exact,
    paired_seed_test,
)

HEADLINE = ("accuracy", "f1_weighted", "f1_macro")
HEADLINE_NAMES = {"accuracy": "accuracy", "f1_weighted": "weighted F1", "f1_macro": "macro F1"}


def fold_of(row: dict) -> int | None:
    """The held-out part of a trial under k-fold selection, None for a trial selected on the cache's dev split."""
    config = row.get("config") or {}
    return config.get("fold", 0) if config.get("selection") == "folds" else None


def reported_split(rows: list[dict]) -> tuple[str, str]:
    """(the split a table reports, how to say it): test when every trial has it; under k-fold selection the
    held-out parts ("dev" in each fold's run), which together are train+dev; else dev."""
    if rows and all(fold_of(row) is not None for row in rows):
        folds = rows[0]["config"]["folds"]
        return "dev", f"held-out parts of {folds}-fold selection over train+dev; the test split never opened"
    if rows and all(row.get("test") for row in rows):
        return "test", "test split, dev-selected checkpoints"
    return "dev", "dev split (the cache has no test split), dev-selected checkpoints"


def unit(row: dict):
    """What pairs two rows' trials: the seed, or under k-fold selection "seed/fold" (every variant sees the same
    folds: spp_scl/cache/folds.py), so a paired test over folds and seeds matches like with like."""
    fold = fold_of(row)
    return row["seed"] if fold is None else f"{row['seed']}/{fold}"


def run_split_metrics(row: dict, split: str) -> dict | None:
    """The split's full metrics (per class, confusion matrix) from the row's run folder, None when it is gone."""
    path = Path(row["run_dir"]) / "metrics.json" if row.get("run_dir") else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text()).get(split)


def run_split_predictions(row: dict, split: str) -> tuple[list[str], np.ndarray, np.ndarray, list[str]] | None:
    """(ids, label indices, class probabilities, class names) of the split from the row's predictions.csv, None
    when it is gone. The class order is that of the file's p_<class> columns."""
    path = Path(row["run_dir"]) / "predictions.csv" if row.get("run_dir") else None
    if path is None or not path.is_file():
        return None
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        classes = [name[2:] for name in header[4:]]
        lines = [line for line in reader if line[0] == split]
    if not lines:
        return None
    ids = [line[1] for line in lines]
    labels = np.array([classes.index(line[2]) for line in lines])
    probabilities = np.array([[float(value) for value in line[4:]] for line in lines])
    return ids, labels, probabilities, classes


def summarise_row(rows: list[dict], split: str) -> dict:
    """One row's seeds on `split`: the per-seed values (headline metrics, per-class F1, collapse), and over seeds
    each headline metric's and each class's F1 as spp_scl.runs.trials.statistics.describe gives them."""
    per_seed = []
    for row in sorted(rows, key=lambda r: (r["seed"], fold_of(r) or 0)):
        headline = row.get(split) or {}
        full = run_split_metrics(row, split)
        per_seed.append(
            {
                "seed": unit(row),
                **{key: headline.get(key) for key in HEADLINE},
                "per_class_f1": {name: values["f1"] for name, values in full["per_class"].items()} if full else None,
                "collapsed": collapse_reason(full["confusion_matrix"]) if full else None,
            }
        )
    summary = {"seeds": [entry["seed"] for entry in per_seed]}
    for key in HEADLINE:
        summary[key] = describe([entry[key] for entry in per_seed if entry[key] is not None])
    classes = next((list(entry["per_class_f1"]) for entry in per_seed if entry["per_class_f1"]), [])
    summary["per_class_f1"] = {
        name: describe([entry["per_class_f1"][name] for entry in per_seed if entry["per_class_f1"]]) for name in classes
    }
    summary["collapsed_seeds"] = [entry["seed"] for entry in per_seed if entry["collapsed"]]
    summary["per_seed"] = per_seed
    summary["ensemble"] = ensemble_summary(rows, split)
    return summary


def ensemble_outcome(rows: list[dict], split: str) -> tuple[list[str], np.ndarray, np.ndarray, list[str]] | None:
    """(ids, labels, the seed ensemble's class per item, class names) of the rows on `split`, None when a run
    folder's predictions are gone. Under k-fold selection, each fold's seed ensemble on its held-out part, the folds
    joined: every record of train+dev once."""
    folds = sorted({fold_of(row) for row in rows}, key=lambda fold: -1 if fold is None else fold)
    parts = [_one_ensemble([row for row in rows if fold_of(row) == fold], split) for fold in folds]
    if not parts or any(part is None for part in parts):
        return None
    ids = [item for part in parts for item in part[0]]
    return ids, np.concatenate([part[1] for part in parts]), np.concatenate([part[2] for part in parts]), parts[0][3]


def ensemble_correctness(rows: list[dict], split: str) -> tuple[list[str], np.ndarray] | None:
    """(ids, whether the rows' seed ensemble is right on each), None when a run folder's predictions are gone."""
    outcome = ensemble_outcome(rows, split)
    return None if outcome is None else (outcome[0], outcome[2] == outcome[1])


def ensemble_summary(rows: list[dict], split: str) -> dict | None:
    """The seed ensemble's headline metrics on `split` (folds joined) and how many seeds it averages; None for one
    seed (per fold), or when predictions are gone."""
    seeds = len({row["seed"] for row in rows})
    outcome = ensemble_outcome(rows, split) if seeds > 1 else None
    if outcome is None:
        return None
    _, labels, predictions, classes = outcome
    metrics = classification_metrics(labels, predictions, classes)
    return {"seeds": seeds, **{key: metrics[key] for key in HEADLINE}}


def _one_ensemble(rows: list[dict], split: str) -> tuple[list[str], np.ndarray, np.ndarray, list[str]] | None:
    loaded = [run_split_predictions(row, split) for row in rows]
    if not loaded or any(entry is None for entry in loaded):
        return None
    ids, labels, _, classes = loaded[0]
    position = {item: index for index, item in enumerate(ids)}
    aligned = []
    for other_ids, _, probabilities, _ in loaded:
        if sorted(other_ids) != sorted(ids):
            return None
        aligned.append(probabilities[np.argsort([position[item] for item in other_ids])])
    return ids, labels, ensemble_predictions(aligned), classes


def item_test(reference_rows: list[dict], other_rows: list[dict], split: str) -> dict:
    """The exact McNemar test of the two rows' seed ensembles over the split's items (matched by id)."""
    reference, other = ensemble_correctness(reference_rows, split), ensemble_correctness(other_rows, split)
    if reference is None or other is None or sorted(reference[0]) != sorted(other[0]):
        return {"test": ITEM_TEST, "p": None, "holds_at_5pct": None, "note": "per-item predictions not available"}
    order = {item: index for index, item in enumerate(other[0])}
    other_correct = other[1][[order[item] for item in reference[0]]]
    return mcnemar_exact(reference[1], other_correct)


def paired_tests(reference_rows: list[dict], other_rows: list[dict], split: str) -> dict:
    """The reference row against another: the paired t-test over matched seeds for each headline metric, and the
    exact McNemar test over items on the seed ensembles."""

    def by_seed(rows: list[dict], key: str) -> dict:
        return {unit(row): row[split][key] for row in rows if row.get(split)}

    return {
        "seeds": {key: paired_seed_test(by_seed(reference_rows, key), by_seed(other_rows, key)) for key in HEADLINE},
        "items": item_test(reference_rows, other_rows, split),
    }


def compare_rows(groups: dict[str, list[dict]], reference: str | None, split: str) -> dict:
    """Every row summarised on `split`, and the reference row tested against each other row (no tests when the
    reference row is absent)."""
    rows = {label: summarise_row(group, split) for label, group in groups.items()}
    tests = {}
    if reference in groups:
        tests = {
            label: paired_tests(groups[reference], group, split)
            for label, group in groups.items()
            if label != reference
        }
    return {"split": split, "reference": reference if reference in groups else None, "rows": rows, "tests": tests}
