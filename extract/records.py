"""Dataset readers: the CLMLF split format and a generic JSONL/CSV format, into one list of records.

Every record a reader cannot use is either skipped with its reason (the default) or, with `strict`, stops the
run with an error naming the file and the record. Checks that need the image decoded happen later, in
`extract/images.py`; everything that can be decided from the split files is decided here.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from spp_scl.core.errors import InputError
from spp_scl.extract.split_assignment import assign_splits

SPLITS = ("train", "dev", "test")
SPLIT_ALIASES = {"val": "dev", "valid": "dev", "validation": "dev"}
DATASET_CLASSES = {
    "mvsa-single": ["positive", "neutral", "negative"],
    "mvsa-multiple": ["positive", "neutral", "negative"],
    "hfm": ["not-sarcastic", "sarcastic"],
}
NON_LATIN_LIMIT = 0.5  # a text whose letters are mostly outside the Latin script is taken as non-English
FEW_RECORDS = 5  # a class inferred from the labels with fewer records than this is likely a typo in a label


class BadInput(InputError):
    """A record or file that cannot be used, raised in strict mode (and for whole-file problems always)."""


def read_json_list(path: Path, what: str) -> list:
    """A JSON file that holds a list; a file that does not is a BadInput naming it."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a byte-order mark (Windows editors) is dropped
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInput(f"{path} is not valid JSON: {error}") from error
    if not isinstance(rows, list):
        raise BadInput(f"{path} must hold a JSON list of {what}, not a {type(rows).__name__}")
    return rows


@dataclass(frozen=True)
class Record:
    split: str
    id: str
    text: str
    label: int
    image: Path
    source: str  # where the record came from, for messages: "train.json[12]" or "posts.csv:7"


@dataclass(frozen=True)
class Skipped:
    split: str
    id: str
    source: str
    reason: str

    def as_dict(self) -> dict:
        return {"split": self.split, "id": self.id, "source": self.source, "reason": self.reason}


@dataclass
class Dataset:
    name: str
    class_names: list[str]
    records: list[Record]  # canonical order: train, dev, test, each in the order of its source file
    skipped: list[Skipped]
    source_files: list[Path]
    image_root: Path
    policy: dict = field(default_factory=dict)  # the options that decide which records are kept
    inferred_classes: bool = False  # the class names were read off the labels (no --dataset, no --classes)

    def sources_sha256(self) -> dict[str, str]:
        """A hash per split file (its bytes) and one over the kept records' image files (id and bytes), so a
        changed split file or a replaced image is named when a cache is checked against its sources."""
        hashes = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(self.source_files)}
        images = hashlib.sha256()
        for record in self.records:
            images.update(record.id.encode() + b"\0")
            with record.image.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    images.update(chunk)
        hashes["images"] = images.hexdigest()
        return hashes


class _Collector:
    """Collects skipped records, or raises at the first one in strict mode."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.skipped: list[Skipped] = []

    def skip(self, split: str, record_id: str, source: str, reason: str) -> None:
        if self.strict:
            raise BadInput(f"{source}: record id {record_id!r}: {reason} (strict mode; without --strict it is skipped)")
        self.skipped.append(Skipped(split, record_id, source, reason))


def non_latin_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum(not unicodedata.name(c, "").startswith("LATIN") for c in letters) / len(letters)


def text_problem(text: object, allow_non_english: bool) -> str | None:
    if not isinstance(text, str):
        return f"text is not a string ({type(text).__name__})"
    if not text.strip():
        return "empty text" if not text else "whitespace-only text"
    share = non_latin_share(text)
    if not allow_non_english and share > NON_LATIN_LIMIT:
        return f"non-English text ({share:.0%} of its letters are not Latin script; --allow-non-english keeps it)"
    return None


def image_path(root: Path, relative: str) -> Path | None:
    """The image's resolved path, or None when `relative` would reach outside `root`. A symbolic link loop (an
    image linked to itself) is an OSError like any unusable path; Python 3.11's resolve() raises RuntimeError."""
    try:
        candidate = (root / relative).resolve()
    except RuntimeError as error:
        raise OSError(errno.ELOOP, str(error)) from None
    return candidate if candidate.is_relative_to(root.resolve()) else None


def parse_label(value: object, class_names: list[str] | None) -> int | None:
    """A label given as a class name or an index; None when it is neither. Names win, so that classes
    named '1', '2', '3' are read by name."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    if class_names and text in class_names:
        return class_names.index(text)
    if isinstance(value, int) or (isinstance(value, str) and text.lstrip("-").isdigit()):
        index = int(text)
        return index if class_names is None or 0 <= index < len(class_names) else None
    return None


def _add(
    records, collector, seen, split, record_id, text, label, image_root, relative_image, source, allow_non_english
):
    """Validate one raw row and append it as a Record, or report why it is skipped."""
    if not isinstance(record_id, str) or not record_id.strip():
        return collector.skip(split, str(record_id), source, "missing or empty id")
    if record_id in seen:
        return collector.skip(split, record_id, source, f"duplicate id (first at {seen[record_id]})")
    problem = text_problem(text, allow_non_english)
    if problem:
        return collector.skip(split, record_id, source, problem)
    if label is None:
        return collector.skip(split, record_id, source, "label is not one of the dataset's classes")
    try:
        path = image_path(image_root, relative_image)
    except (ValueError, OSError) as error:  # a NUL byte or an over-long name cannot be a path
        return collector.skip(split, record_id, source, f"image path {relative_image!r} is not usable: {error}")
    if path is None:
        return collector.skip(split, record_id, source, f"image path {relative_image!r} reaches outside {image_root}")
    if not path.is_file():
        reason = "image is not a regular file" if path.exists() else "image not found"  # a FIFO would block a read
        return collector.skip(split, record_id, source, f"{reason}: {path}")
    seen[record_id] = source
    records.append(Record(split, record_id, text, label, path, source))


def read_split_folder(
    folder: Path, dataset: str, images: Path | None, strict: bool, allow_non_english: bool
) -> Dataset:
    """The CLMLF format: `train.json`, `dev.json`, `test.json` (any may be absent), images `<id>.jpg`."""
    if dataset not in DATASET_CLASSES:
        raise BadInput(
            f"--dataset {dataset!r} is not known; choose one of {sorted(DATASET_CLASSES)} "
            "or give a JSONL/CSV file with --data"
        )
    class_names = DATASET_CLASSES[dataset]
    image_root = images or folder / "images"
    if not image_root.is_dir():
        raise BadInput(f"image folder {image_root} does not exist (set it with --images)")
    files = [folder / f"{split}.json" for split in SPLITS if (folder / f"{split}.json").is_file()]
    if not files:
        raise BadInput(f"{folder} holds none of train.json, dev.json, test.json")
    collector, records, seen = _Collector(strict), [], {}
    for path in files:
        split = path.stem
        rows = read_json_list(path, "records")
        for index, row in enumerate(rows):
            source = f"{path.name}[{index}]"
            if not isinstance(row, dict) or not {"id", "text", "emotion_label"} <= row.keys():
                collector.skip(
                    split,
                    str(row.get("id", "?")) if isinstance(row, dict) else "?",
                    source,
                    "malformed record: needs the keys id, text, emotion_label",
                )
                continue
            record_id = str(row["id"]) if isinstance(row["id"], (str, int)) else row["id"]
            relative = f"{record_id}.jpg" if isinstance(record_id, str) else ""
            _add(
                records,
                collector,
                seen,
                split,
                record_id,
                row["text"],
                parse_label(row["emotion_label"], class_names),
                image_root,
                relative,
                source,
                allow_non_english,
            )
    return Dataset(
        dataset, class_names, records, collector.skipped, files, image_root, {"allow_non_english": allow_non_english}
    )


def _generic_rows(path: Path, collector: _Collector):
    """(source, row dict or None) for each line of a JSONL or CSV file; None marks a malformed line."""
    if path.suffix.lower() == ".jsonl":
        with path.open("rb") as lines:
            for number, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError) as error:
                    collector.skip("?", "?", f"{path.name}:{number}", f"malformed JSON line: {error}")
                    continue
                if not isinstance(row, dict):
                    collector.skip("?", "?", f"{path.name}:{number}", "malformed JSON line: not an object")
                    continue
                yield f"{path.name}:{number}", row
        return
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadInput(f"{path} is not UTF-8 text: {error}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise BadInput(f"{path} is empty")
    header = [name.strip() for name in header]
    missing = {"image", "text", "label", "split"} - set(header)
    if missing - {"split"}:  # without a split column, read_generic_file draws the splits or names --split
        raise BadInput(f"{path} lacks the column(s) {sorted(missing)}; it needs image, text, label, split")
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            collector.skip("?", "?", f"{path.name}:{reader.line_num}", f"malformed CSV line: {error}")
            continue
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            collector.skip(
                "?",
                "?",
                f"{path.name}:{reader.line_num}",
                f"malformed CSV line: {len(cells)} fields, the header has {len(header)}",
            )
            continue
        yield f"{path.name}:{reader.line_num}", dict(zip(header, cells))


def read_generic_file(
    path: Path,
    images: Path | None,
    classes: list[str] | None,
    strict: bool,
    allow_non_english: bool,
    name: str | None = None,
    split_shares: list[float] | None = None,
    split_seed: int = 0,
) -> Dataset:
    """Rows with `image` (relative to `images`, default the file's folder), `text`, `label` (name or index),
    `split` (train/dev/test; val and validation mean dev), and optionally `id` (default: the image path). With
    `split_shares` the file has no split values and each row's split is drawn (spp_scl.extract.split_assignment)."""
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise BadInput(f"{path}: a data file must be .jsonl or .csv (or give a folder in the split format)")
    collector = _Collector(strict)
    rows = list(_generic_rows(path, collector))
    given = sum(str(row.get("split") or "").strip() != "" for _, row in rows)
    if split_shares is not None:
        if given:
            raise BadInput(
                f"{path}: {given} of {len(rows)} rows have a split, and --split draws them: "
                "remove the split values or the --split option"
            )
        labels = [str(row.get("label", "")).strip() for _, row in rows]
        rows = [
            (source, {**row, "split": split})
            for (source, row), split in zip(rows, assign_splits(labels, split_shares, split_seed))
        ]
    elif rows and not given:
        raise BadInput(
            f"{path}: no row has a split (train, dev, test): add a split column, or let extract draw one, "
            "e.g. --split 0.8,0.1,0.1 --split-seed 0"
        )
    if classes is None and name in DATASET_CLASSES:
        classes = DATASET_CLASSES[name]
    inferred = classes is None
    if classes is None:
        labels = [str(row.get("label", "")).strip() for _, row in rows]
        if labels and all(label.lstrip("-").isdigit() for label in labels):
            classes = [str(i) for i in range(max(int(label) for label in labels) + 1)]
        else:
            classes = sorted({label for label in labels if label})
    image_root = images or path.parent
    by_split: dict[str, list[Record]] = {split: [] for split in SPLITS}
    seen: dict[str, str] = {}
    for source, row in rows:
        split = str(row.get("split", "")).strip().lower()
        split = SPLIT_ALIASES.get(split, split)
        relative = row.get("image")
        record_id = row.get("id")
        record_id = str(record_id) if record_id not in (None, "") else relative
        if split not in SPLITS:
            collector.skip(
                split or "?", str(record_id), source, f"unknown split {row.get('split')!r} (train, dev, test)"
            )
            continue
        if not isinstance(relative, str) or not relative.strip():
            collector.skip(split, str(record_id), source, "missing image path")
            continue
        _add(
            by_split[split],
            collector,
            seen,
            split,
            record_id,
            row.get("text"),
            parse_label(row.get("label"), classes),
            image_root,
            relative,
            source,
            allow_non_english,
        )
    records = [record for split in SPLITS for record in by_split[split]]
    return Dataset(
        name or path.stem,
        classes,
        records,
        collector.skipped,
        [path],
        image_root,
        {"allow_non_english": allow_non_english}
        | ({"split": list(split_shares), "split_seed": split_seed} if split_shares is not None else {}),
        inferred_classes=inferred,
    )


def class_notes(dataset: Dataset) -> list[str]:
    """What a user should know about classes read off the labels: which they are, and which have so few
    records that a label was probably mistyped ("postive" becomes a class of its own)."""
    if not dataset.inferred_classes:
        return []
    counts = {name: 0 for name in dataset.class_names}
    for record in dataset.records:
        counts[dataset.class_names[record.label]] += 1
    notes = [
        "classes inferred from the labels (no --dataset or --classes): "
        + ", ".join(f"{name} ({count})" for name, count in counts.items())
    ]
    for name, count in counts.items():
        if count < FEW_RECORDS:
            notes.append(
                f"warning: class {name!r} has only {count} record{'s' if count != 1 else ''}: a mistyped label? "
                "Fix the label, or name the classes with --classes (the others are then skipped and listed)"
            )
    return notes


def read_dataset(
    data: str | Path,
    dataset: str | None = None,
    images: str | Path | None = None,
    classes: list[str] | None = None,
    strict: bool = False,
    allow_non_english: bool = False,
    split: list[float] | None = None,
    split_seed: int = 0,
) -> Dataset:
    data = Path(data)
    images = Path(images) if images else None
    if data.is_dir():
        if split is not None:
            raise BadInput(
                f"--split draws the splits of a .jsonl / .csv file; {data} is a split folder, whose files are its splits"
            )
        if dataset is None:
            raise BadInput(
                f"{data} is a split folder: name its classes with --dataset ({', '.join(sorted(DATASET_CLASSES))})"
            )
        return read_split_folder(data, dataset, images, strict, allow_non_english)
    if data.is_file():
        return read_generic_file(data, images, classes, strict, allow_non_english, dataset, split, split_seed)
    raise BadInput(f"--data {data}: no such file or folder")


def cache_name(dataset: Dataset, text_encoder: str, image_encoder: str) -> str:
    """A default cache file name from the dataset and the encoders' last path parts."""

    def short(spec: str) -> str:
        return os.path.basename(spec.rstrip("/").split(":")[0]).removesuffix(".py") or "encoder"

    return f"{dataset.name}__{short(text_encoder)}__{short(image_encoder)}.h5"
