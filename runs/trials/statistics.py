"""The numbers every table and summary shows (compare, tables, sweep, report): spread over seeds, paired tests, and
the collapse flag. scipy.stats does the statistics; this module only decides what is shown when they do not apply.

Over seeds: n, mean, standard deviation (ddof=1) and the 95% Student-t interval of the mean. A spread needs two
seeds that differ: with one seed, or when every seed gave the same value (a deterministic head, such as the probe),
the interval is None and the cell says "n/a", never "+- 0.0000", which would read as a measured certainty.

Paired tests of a reference row (SPP-SCL; a sweep's best point) against another row: over matched seeds, the paired
t-test on the per-seed values; over items, the exact McNemar test (the binomial test on the discordant items) on the
two rows' seed ensembles. A difference "holds at 5%" when p < ALPHA; each test stands alone (no correction for the
number of rows tested).

A run has collapsed when its predictions cover one class, or when its macro F1 is at or below the macro F1 of
predicting the majority class for every item.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn.metrics import f1_score

ALPHA = 0.05
CONFIDENCE = 0.95
NOT_AVAILABLE = "n/a"
# Values closer than this count as equal: metrics are fractions of the items, and differences of them computed in
# another order can part in the last bit (0.8 - 0.7 != 0.7 - 0.6), which a t-test would read as no spread at all.
EQUAL_WITHIN = 1e-9
SEED_TEST = "paired t-test over matched seeds (scipy.stats.ttest_rel)"
ITEM_TEST = (
    "exact McNemar test over items on the seed ensembles (scipy.stats.binomtest on the discordant items; "
    "an ensemble predicts the argmax of its seeds' mean class probabilities)"
)


def describe(values) -> dict:
    """{"n", "mean", "std", "ci95", "note"} of per-seed values. std is None for one seed (undefined with ddof=1);
    ci95 is None for one seed or identical values, and `note` says which."""
    values = [float(value) for value in values]
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None, "note": "no values"}
    mean = float(np.mean(values))
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci95": None, "note": "one seed: no spread"}
    if max(values) - min(values) <= EQUAL_WITHIN:
        return {"n": n, "mean": mean, "std": 0.0, "ci95": None, "note": "every seed gave the same value: no spread"}
    std = float(np.std(values, ddof=1))
    low, high = stats.t.interval(CONFIDENCE, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "ci95": [float(low), float(high)], "note": None}


def spread_cell(summary: dict, digits: int = 4) -> str:
    """'0.8100 +- 0.0141 [0.6830, 0.9370]' (mean +- std [95% interval]); '0.7000 +- n/a' without a spread."""
    if summary["mean"] is None:
        return "-"
    mean = f"{summary['mean']:.{digits}f}"
    if summary["ci95"] is None:
        return f"{mean} +- {NOT_AVAILABLE}"
    low, high = summary["ci95"]
    return f"{mean} +- {summary['std']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def paired_seed_test(reference: dict[int, float], other: dict[int, float]) -> dict:
    """The paired t-test of reference[seed] against other[seed] over the seeds both have. p is None with fewer than
    two matched seeds, or when the difference is the same at every seed (no spread to test it against)."""
    seeds = sorted(set(reference) & set(other))
    differences = [reference[seed] - other[seed] for seed in seeds]
    result = {
        "test": SEED_TEST,
        "seeds": seeds,
        "mean_difference": float(np.mean(differences)) if seeds else None,
        "statistic": None,
        "p": None,
        "holds_at_5pct": None,
        "note": None,
    }
    if len(seeds) < 2:
        result["note"] = "fewer than two matched seeds"
    elif max(differences) - min(differences) <= EQUAL_WITHIN:
        result["note"] = "the same difference at every seed: no spread to test"
    else:
        outcome = stats.ttest_rel([reference[s] for s in seeds], [other[s] for s in seeds])
        result.update(statistic=float(outcome.statistic), p=float(outcome.pvalue))
        result["holds_at_5pct"] = result["p"] < ALPHA
    return result


def mcnemar_exact(reference_correct, other_correct) -> dict:
    """The exact McNemar test on two classifiers' per-item correctness (the same items, in the same order): the
    two-sided binomial test of the items only the reference got right among the items exactly one got right."""
    reference_correct = np.asarray(reference_correct, dtype=bool)
    other_correct = np.asarray(other_correct, dtype=bool)
    only_reference = int(np.sum(reference_correct & ~other_correct))
    only_other = int(np.sum(~reference_correct & other_correct))
    result = {
        "test": ITEM_TEST,
        "items": int(reference_correct.size),
        "reference_accuracy": float(reference_correct.mean()) if reference_correct.size else None,
        "other_accuracy": float(other_correct.mean()) if other_correct.size else None,
        "only_reference_right": only_reference,
        "only_other_right": only_other,
        "p": None,
        "holds_at_5pct": None,
        "note": None,
    }
    if only_reference + only_other == 0:
        result["note"] = "the two ensembles are right on the same items"
    else:
        result["p"] = float(stats.binomtest(only_reference, only_reference + only_other, 0.5).pvalue)
        result["holds_at_5pct"] = result["p"] < ALPHA
    return result


def ensemble_predictions(probabilities: list[np.ndarray]) -> np.ndarray:
    """The seed ensemble's class per item: the argmax of the seeds' mean class probabilities ([items, classes] each)."""
    return np.mean(np.stack(probabilities), axis=0).argmax(axis=1)


def majority_macro_f1(labels, num_classes: int) -> float:
    """The macro F1 of predicting the most frequent label for every item: the level a collapsed head sits at."""
    labels = np.asarray(labels, dtype=int)
    majority = int(np.bincount(labels, minlength=num_classes).argmax())
    constant = np.full_like(labels, majority)
    return float(f1_score(labels, constant, labels=list(range(num_classes)), average="macro", zero_division=0))


def collapse_reason(confusion_matrix) -> str | None:
    """Why a run's predictions on a split count as collapsed (rows: true class, columns: predicted), or None."""
    matrix = np.asarray(confusion_matrix, dtype=int)
    num_classes = matrix.shape[0]
    predicted = matrix.sum(axis=0)
    if int(np.count_nonzero(predicted)) <= 1:
        return "predicts one class"
    true_index, predicted_index = np.nonzero(matrix)
    counts = matrix[true_index, predicted_index]
    labels, predictions = np.repeat(true_index, counts), np.repeat(predicted_index, counts)
    classes = list(range(num_classes))
    macro = float(f1_score(labels, predictions, labels=classes, average="macro", zero_division=0))
    level = majority_macro_f1(labels, num_classes)
    if macro <= level + 1e-12:
        return f"macro F1 {macro:.4f} at or below the majority-class level {level:.4f}"
    return None


def p_cell(test: dict, digits: int = 4) -> str:
    """'0.0123 *' (holds at 5%), '0.2100', '<0.0001 *' (below what `digits` shows), or 'n/a' when the test does not
    apply."""
    if test["p"] is None:
        return NOT_AVAILABLE
    floor = 10.0**-digits
    shown = f"<{floor:.{digits}f}" if test["p"] < floor else f"{test['p']:.{digits}f}"
    return shown + (" *" if test["holds_at_5pct"] else "")


def stamped(title: str, data_note: str | None) -> str:
    """A Markdown title with the data note in front ('[DEMO: generated data, not MVSA] Table 4: ...')."""
    return f"[{data_note}] {title}" if data_note else title
