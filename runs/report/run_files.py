"""A run folder's record files as `spp-scl report` reads them, checked first: a metrics.json or log.jsonl that is not
what `spp-scl train` writes (edited, cut, another tool's) is one line naming the file, and the line of log.jsonl,
instead of a traceback or a bare key deep in a table or a plot. Only the shape is checked, the fields the report
reads with the types it reads them as; the values are the run's."""

from __future__ import annotations

import json
from pathlib import Path

from spp_scl.core.errors import InputError

SPLIT_NUMBERS = ("accuracy", "f1_weighted", "f1_macro", "records")
CLASS_NUMBERS = ("precision", "recall", "f1", "support")
DEV_NUMBERS = ("dev_accuracy", "dev_f1_weighted", "dev_f1_macro")  # every epoch's line: the curves draw them


def read_metrics(path: Path, class_names: list[str]) -> dict | None:
    """metrics.json, or None when the folder has none."""
    if not path.is_file():
        return None
    metrics = _read_json(path, path.read_bytes())
    problem = _metrics_problem(metrics, class_names)
    if problem:
        raise InputError(f"{path}: not a metrics.json written by `spp-scl train` ({problem})")
    return metrics


def read_log(path: Path) -> list[dict]:
    """log.jsonl's epoch lines ([] when the folder has none)."""
    if not path.is_file():
        return []
    lines = []
    for number, text in enumerate(path.read_bytes().splitlines(), 1):
        if not text.strip():
            continue
        line = _read_json(path, text, number)
        problem = _log_problem(line)
        if problem:
            raise InputError(f"{path}: line {number} is not an epoch line written by `spp-scl train` ({problem})")
        lines.append(line)
    return lines


def _read_json(path: Path, data: bytes, line: int | None = None):
    where = f"{path}" + (f": line {line}" if line is not None else "")
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise InputError(f"{where} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{where} is not JSON ({error.msg} at column {error.colno})") from None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metrics_problem(metrics, class_names: list[str]) -> str | None:
    if not isinstance(metrics, dict):
        return "not a JSON object"
    if metrics.get("selected_epoch") is not None and not _number(metrics["selected_epoch"]):
        return "selected_epoch is not a number"
    for split in ("dev", "test"):
        values = metrics.get(split)
        if values is None:
            continue
        if not isinstance(values, dict):
            return f"{split} is not an object"
        missing = [key for key in SPLIT_NUMBERS if not _number(values.get(key))]
        if missing:
            return f"{split}.{missing[0]} is not a number"
        matrix = values.get("confusion_matrix")
        if not isinstance(matrix, list) or not all(isinstance(r, list) and all(map(_number, r)) for r in matrix):
            return f"{split}.confusion_matrix is not a table of counts"
        per_class = values.get("per_class")
        for name in class_names:
            entry = per_class.get(name) if isinstance(per_class, dict) else None
            if not isinstance(entry, dict) or not all(_number(entry.get(key)) for key in CLASS_NUMBERS):
                return f"{split}.per_class lacks the precision, recall, F1 and support of class {name!r}"
    return None


def _log_problem(line) -> str | None:
    if not isinstance(line, dict):
        return "not a JSON object"
    if not isinstance(line.get("epoch"), int) or isinstance(line.get("epoch"), bool):
        return "its epoch is not a whole number"
    missing = [key for key in DEV_NUMBERS if not _number(line.get(key))]
    if missing:
        return f"{missing[0]} is not a number"
    odd = [
        key for key, value in line.items() if not (_number(value) or value is None or isinstance(value, (bool, str)))
    ]
    odd = [key for key in odd if not (isinstance(line[key], list) and all(map(_number, line[key])))]
    if odd:
        return f"{odd[0]} is neither a number nor a list of numbers"
    if len(line.get("ha_weight_mean") or []) != len(line.get("ha_weight_std") or []):
        return "ha_weight_mean and ha_weight_std differ in length"
    return None
