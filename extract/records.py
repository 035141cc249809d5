"""Dataset readers into one list of records: the CLMLF split format here, a JSONL/CSV file (extract/table_file.py)
and a Hugging Face dataset (extract/hf_dataset.py); what they share (the record, the skip rules, the labels).

Every record a reader cannot use is either skipped with its reason (the default) or, with `strict`, stops the
run with an error naming the file and the record. Checks that need the image decoded happen later, in
`extract/images.py`; everything that can be decided from the split files is decided here.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from spp_scl.core.errors import InputError
from spp_scl.extract.standard_splits import split_note

SPLITS = ("train", "dev", "test")
SPLIT_ALIASES = {"val": "dev", "valid": "dev", "validation": "dev"}
DATASET_CLASSES = {
    "mvsa-single": ["positive", "neutral", "negative"],
    "mvsa-multiple": ["positive", "neutral", "negative"],
    "hfm": ["not-sarcastic", "sarcastic"],
    "mmsd2": ["not-sarcastic", "sarcastic"],  # MMSD2.0, HFM's posts with its label and text cues cleaned
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
    source_fingerprints: dict = field(default_factory=dict)  # a `datasets` split's own fingerprint, in place of files
    notes: list[str] = field(default_factory=list)  # what extract says of the data (a standard split or not)

    def sources_sha256(self) -> dict[str, str]:
        """A hash per split file (its bytes), or a `datasets` split's fingerprint, and one over the kept records'
        images (id and bytes), so a changed split or a replaced image is named when a cache is checked against its
        sources."""
        hashes = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(self.source_files)}
        hashes.update(self.source_fingerprints)
        images = hashlib.sha256()
        for record in self.records:
            images.update(record.id.encode() + b"\0")
            with record.image.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    images.update(chunk)
        hashes["images"] = images.hexdigest()
        return hashes


class SkipCollector:
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


def add_record(
    records, collector, seen, split, record_id, text, label, image_root, relative_image, source, allow_non_english
):
    """Validate one raw row and append it as a Record, or report why it is skipped. `relative_image` is a path
    relative to `image_root`, or an image held by the data itself (extract/hf_dataset.py), taken as it is."""
    if not isinstance(record_id, str) or not record_id.strip():
        return collector.skip(split, str(record_id), source, "missing or empty id")
    if record_id in seen:
        return collector.skip(split, record_id, source, f"duplicate id (first at {seen[record_id]})")
    problem = text_problem(text, allow_non_english)
    if problem:
        return collector.skip(split, record_id, source, problem)
    if label is None:
        return collector.skip(split, record_id, source, "label is not one of the dataset's classes")
    if not isinstance(relative_image, str):
        seen[record_id] = source
        return records.append(Record(split, record_id, text, label, relative_image, source))
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
    collector, records, seen, rows_by_split = SkipCollector(strict), [], {}, {}
    for path in files:
        split = path.stem
        rows = rows_by_split[split] = read_json_list(path, "records")
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
            add_record(
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
        dataset,
        class_names,
        records,
        collector.skipped,
        files,
        image_root,
        {"allow_non_english": allow_non_english},
        notes=[split_note(dataset, rows_by_split)],
    )


def data_notes(dataset: Dataset) -> list[str]:
    """What a user should know about the data: whether it is a standard split, and of classes read off the labels,
    which they are and which have so few records that a label was probably mistyped ("postive" becomes a class of
    its own)."""
    if not dataset.inferred_classes:
        return list(dataset.notes)
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
    return dataset.notes + notes


def read_dataset(
    data: str | Path,
    dataset: str | None = None,
    images: str | Path | None = None,
    classes: list[str] | None = None,
    strict: bool = False,
    allow_non_english: bool = False,
    split: list[float] | None = None,
    split_seed: int = 0,
    columns: dict[str, str | None] | None = None,  # a `datasets` dataset's text, image, label and id columns
) -> Dataset:
    from spp_scl.extract.hf_dataset import is_hf_data, read_hf_dataset

    images = Path(images) if images else None
    if is_hf_data(str(data)):
        if split is not None:
            raise BadInput(f"--split draws the splits of a .jsonl / .csv file; {data} has splits of its own")
        return read_hf_dataset(str(data), dataset, images, classes, strict, allow_non_english, columns)
    data = Path(data)
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
        from spp_scl.extract.table_file import read_generic_file

        return read_generic_file(data, images, classes, strict, allow_non_english, dataset, split, split_seed)
    raise BadInput(f"--data {data}: no such file or folder")


def cache_name(dataset: Dataset, text_encoder: str, image_encoder: str) -> str:
    """A default cache file name from the dataset and the encoders' last path parts."""

    def short(spec: str) -> str:
        spec = spec.removeprefix("timm:").removeprefix("local-dir:").removeprefix("hf-hub:")
        return os.path.basename(spec.rstrip("/").split(":")[0]).removesuffix(".py") or "encoder"

    return f"{dataset.name}__{short(text_encoder)}__{short(image_encoder)}.h5"
