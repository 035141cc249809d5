"""Classification metrics of one split, in the form every run folder's metrics.json holds."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, class_names: list[str]) -> dict:
    classes = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_weighted": float(f1_score(labels, predictions, labels=classes, average="weighted", zero_division=0)),
        "f1_macro": float(f1_score(labels, predictions, labels=classes, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        # Two classes: the F1 of the second class (sarcastic for hfm / mmsd2), which the MMSD papers report beside
        # macro F1.
        **({"f1_positive": float(f1[1])} if len(class_names) == 2 else {}),
        "confusion_matrix": confusion_matrix(labels, predictions, labels=classes).tolist(),
        "records": int(len(labels)),
    }
