"""Inputs and outputs of predict: image-text pairs read from a file, and result rows written as JSONL or CSV.

Input files, one pair per row, read lazily so that large files stream:
- `.jsonl`: one JSON object per line; `.csv`: a header line, then one row per line;
- `.json`: a JSON list of objects (the CLMLF split format: `id`, `text`, `emotion_label`).
Each row has `text` and either `image` (a path) or `id`, whose image is then `<id>.jpg`. A `label` (in a .json
list, `emotion_label`) is kept on the pair for `spp-scl evaluate`; predict ignores it, and other keys. A row that cannot be read becomes a pair carrying its problem, so that it gets an error
row in the output instead of stopping the run.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spp_scl.core.spreadsheet import spreadsheet_safe
from spp_scl.extract.records import read_json_list


@dataclass(frozen=True)
class Pair:
    id: str
    image: object  # a path (str or Path) or a PIL image; None when the row named none
    text: object  # normally a str; anything else is reported as a bad pair
    problem: str | None = None  # set when the row itself could not be read
    label: object = None  # the row's `label` (or `emotion_label`), as written; read by evaluate, not by predict


@dataclass
class PairResult:
    id: str
    prediction: str | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        if self.error is not None:
            return {"id": self.id, "error": self.error}
        return {"id": self.id, "prediction": self.prediction, "probabilities": self.probabilities}


def image_folder_for_ids(pair_file: Path, images: Path | None) -> Path:
    """Where `<id>.jpg` lives: `images`, else the file's `images/` subfolder (the CLMLF layout), else its folder."""
    if images is not None:
        return images
    return pair_file.parent / "images" if (pair_file.parent / "images").is_dir() else pair_file.parent


def _pair_from_row(row: dict, source: str, pair_file: Path, images: Path | None) -> Pair:
    record_id = row.get("id")
    record_id = str(record_id) if record_id not in (None, "") else None
    image = row.get("image")
    if isinstance(image, str) and image.strip():
        path = (images or pair_file.parent) / image.strip()
    elif record_id is not None:
        path = image_folder_for_ids(pair_file, images) / f"{record_id}.jpg"
    else:
        return Pair(source, None, row.get("text"), f"{source}: the row has neither an image nor an id")
    return Pair(record_id or str(image), path, row.get("text"), label=row.get("label", row.get("emotion_label")))


def count_rows(path: Path) -> int | None:
    """Rows in a pair file, for the progress bar (a quick pass; None when it cannot tell)."""
    suffix = path.suffix.lower()
    if not path.is_file():  # a FIFO would block here, and be read only once
        return None
    try:
        if suffix == ".jsonl":
            with path.open(encoding="utf-8-sig", errors="replace") as lines:
                return sum(1 for line in lines if line.strip())
        if suffix == ".csv":
            with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
                return max(sum(1 for _ in csv.reader(handle)) - 1, 0)
    except (OSError, csv.Error):
        return None
    return None


def read_pair_file(path: str | Path, images: str | Path | None = None) -> Iterator[Pair]:
    path = Path(path)
    images = Path(images) if images else None
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file" if path.exists() else f"{path}: no such file")
    if suffix == ".json":
        rows = read_json_list(path, "objects with text and image or id")
        for index, row in enumerate(rows):
            source = f"{path.name}[{index}]"
            yield (
                _pair_from_row(row, source, path, images)
                if isinstance(row, dict)
                else Pair(source, None, None, f"{source}: not a JSON object")
            )
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8-sig", errors="replace") as lines:  # -sig: a byte-order mark is dropped
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                source = f"{path.name}:{number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    yield Pair(source, None, None, f"{source}: malformed JSON line ({error})")
                    continue
                yield (
                    _pair_from_row(row, source, path, images)
                    if isinstance(row, dict)
                    else Pair(source, None, None, f"{source}: not a JSON object")
                )
    elif suffix == ".csv":
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:  # Excel writes a BOM
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if "text" not in header or not {"image", "id"} & set(header):
                raise ValueError(f"{path} needs a header with a text column and an image or id column; it has {header}")
            for cells in reader:
                source = f"{path.name}:{reader.line_num}"
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != len(header):
                    yield Pair(source, None, None, f"{source}: {len(cells)} fields, the header has {len(header)}")
                    continue
                yield _pair_from_row(dict(zip(header, cells)), source, path, images)
    else:
        raise ValueError(f"{path}: a pair file must be .jsonl, .csv or .json")


class ResultWriter:
    """Writes PairResults as JSON lines (nested probabilities) or CSV (one p_<class> column per class)."""

    def __init__(self, out: str | Path | None, class_names: list[str], form: str | None = None):
        self.class_names = class_names
        self.form = form or (Path(out).suffix.lower().lstrip(".") if out else "jsonl")
        if self.form not in ("jsonl", "csv"):
            raise ValueError(f"output {out}: write .jsonl or .csv (or give the format)")
        self.handle = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout
        self.csv = None
        if self.form == "csv":
            self.csv = csv.writer(self.handle)
            self.csv.writerow(["id", "prediction", *[f"p_{name}" for name in class_names], "error"])

    def write(self, result: PairResult) -> None:
        if self.csv is None:
            row = result.as_dict()
            if "probabilities" in row:  # 6 decimals, as the trainer's predictions.csv
                row["probabilities"] = {name: round(p, 6) for name, p in row["probabilities"].items()}
            self.handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif result.error is not None:  # ids and messages come from data files: never a formula in a spreadsheet
            self.csv.writerow(
                [spreadsheet_safe(result.id), "", *[""] * len(self.class_names), spreadsheet_safe(result.error)]
            )
        else:
            self.csv.writerow(
                [
                    spreadsheet_safe(result.id),
                    result.prediction,
                    *[f"{result.probabilities[name]:.6f}" for name in self.class_names],
                    "",
                ]
            )
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not sys.stdout:
            self.handle.close()
