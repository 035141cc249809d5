"""Datasets of the Hugging Face `datasets` library: `--data hf:NAME[:CONFIG]` (from the hub) or a folder written by
`save_to_disk` (a DatasetDict, or one Dataset).

Each split becomes train, dev or test (`validation`, `valid`, `val` and `dev` are dev); other splits are left out and
named. A row needs a text, an image and a label column, found by name (or named with --text-column,
--image-column, --label-column; --id-column, else the split and row number, identifies a record). The image column
is either the library's Image feature (the encoded bytes are read row by row, never all held at once) or a path,
relative to --images (default: the saved folder). The class names come from --classes, else --dataset, else the
label column's ClassLabel, else the labels. The cache's fingerprint holds each split's own `datasets`
fingerprint and a hash over the images, so a changed dataset is refused like a changed split file.
"""

from __future__ import annotations

import io
from pathlib import Path

from spp_scl.core.extras import require
from spp_scl.extract.images import open_regular_file
from spp_scl.extract.records import (
    DATASET_CLASSES,
    SPLITS,
    BadInput,
    Dataset,
    Record,
    SkipCollector,
    add_record,
    parse_label,
)

PREFIX = "hf:"
DEV_NAMES = ("validation", "valid", "val", "dev")
# Column names tried in order when none is given, the first present wins.
COLUMN_NAMES = {
    "text": ("text", "sentence", "caption", "tweet", "content"),
    "image": ("image", "img", "image_path", "path", "file_name", "image_file"),
    "label": ("label", "labels", "sentiment", "emotion_label", "class"),
    "id": ("id", "image_id", "tweet_id", "idx"),
}


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def is_hf_data(data: str) -> bool:
    return data.startswith(PREFIX) or is_saved_dataset(Path(data))


class StoredImage:
    """One row's encoded image in a `datasets` table, opened as a file when it is decoded."""

    def __init__(self, table, row: int, column: str, name: str):
        self.table, self.row, self.column, self.name = table, row, column, name

    def open(self, mode: str = "rb"):
        value = self.table[self.row][self.column]
        data = value.get("bytes") if isinstance(value, dict) else None
        if data is None and isinstance(value, dict) and value.get("path"):
            return open_regular_file(Path(value["path"]))  # an Image feature that refers to a file it does not hold
        return io.BytesIO(data or b"")

    def __str__(self) -> str:
        return self.name


def _load(data: str):
    """The DatasetDict (or {"train": Dataset}) and a name for messages."""
    datasets = require("datasets")
    if data.startswith(PREFIX) and not is_saved_dataset(Path(data.removeprefix(PREFIX))):
        name, _, config = data.removeprefix(PREFIX).partition(":")
        try:
            loaded = datasets.load_dataset(name, config or None)
        except Exception as error:  # offline, unknown name or configuration: the library's own reason, one line
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise BadInput(f"--data {data}: the datasets library cannot load it: {reason}") from None
    else:
        loaded = datasets.load_from_disk(data.removeprefix(PREFIX))
    if isinstance(loaded, datasets.Dataset):
        loaded = {"train": loaded}
    return loaded


def _column(table, wanted: str | None, role: str, data: str, required: bool = True) -> str | None:
    names = table.column_names
    if wanted is not None:
        if wanted not in names:
            raise BadInput(f"--data {data}: no column {wanted!r} for the {role} (columns: {', '.join(names)})")
        return wanted
    found = next((name for name in COLUMN_NAMES[role] if name in names), None)
    if found is None and required:
        raise BadInput(
            f"--data {data}: no {role} column among {', '.join(names)}; name it with --{role}-column "
            f"(tried {', '.join(COLUMN_NAMES[role])})"
        )
    return found


def read_hf_dataset(
    data: str,
    name: str | None,
    images: Path | None,
    classes: list[str] | None,
    strict: bool,
    allow_non_english: bool,
    columns: dict[str, str | None] | None = None,
) -> Dataset:
    import datasets

    columns = columns or {}
    loaded = _load(data)
    split_of = {split: "dev" if split in DEV_NAMES else split for split in loaded if split in SPLITS + DEV_NAMES}
    if not split_of:
        raise BadInput(f"--data {data}: none of its splits ({', '.join(loaded)}) is train, validation, dev or test")
    if len(set(split_of.values())) != len(split_of):
        raise BadInput(f"--data {data}: more than one split would be dev: {', '.join(split_of)}")
    first = loaded[next(iter(split_of))]
    label_column = _column(first, columns.get("label"), "label", data)
    feature = first.features[label_column]
    label_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    if classes is None and name in DATASET_CLASSES:
        classes = DATASET_CLASSES[name]
    if classes is None and label_names is not None:
        classes = label_names
    # A ClassLabel's indices are read by its names when the classes hold them all (an order of their own is kept
    # straight), else as indices into the classes (MMSD2.0's 0 / 1 as not-sarcastic / sarcastic).
    by_name = label_names is not None and classes is not None and set(label_names) <= set(classes)
    inferred = classes is None
    if classes is None:  # as for a JSONL/CSV file: indices 0..max, or the sorted label names
        labels = [str(v).strip() for split in split_of for v in loaded[split][label_column]]
        numeric = labels and all(label.lstrip("-").isdigit() for label in labels)
        classes = [str(i) for i in range(max(map(int, labels)) + 1)] if numeric else sorted(set(labels) - {""})
    image_root = images or (Path(data) if not data.startswith(PREFIX) else None)
    collector, seen, by_split, fingerprints = SkipCollector(strict), {}, {split: [] for split in SPLITS}, {}
    for hub_split, split in sorted(split_of.items(), key=lambda item: SPLITS.index(item[1])):
        table = loaded[hub_split]
        text_column = _column(table, columns.get("text"), "text", data)
        image_column = _column(table, columns.get("image"), "image", data)
        id_column = _column(table, columns.get("id"), "id", data, required=False)
        stored = isinstance(table.features[image_column], datasets.Image)
        if stored:
            table = table.cast_column(image_column, datasets.Image(decode=False))  # bytes, decoded by extract
        elif image_root is None:
            raise BadInput(
                f"--data {data}: the image column {image_column!r} holds paths: give their folder with --images"
            )
        fingerprints[f"{hub_split}.fingerprint"] = table._fingerprint
        names = [text_column, label_column] + ([id_column] if id_column else [])
        rows = table.select_columns(names + ([] if stored else [image_column]))
        for index, row in enumerate(rows):
            source = f"{hub_split}[{index}]"
            record_id = str(row[id_column]) if id_column and row[id_column] not in (None, "") else source
            value = row[label_column]
            if label_names is not None and isinstance(value, int) and not 0 <= value < len(label_names):
                value = None  # a ClassLabel's -1: no label (as in many hub test splits), skipped as unlabelled
            label = parse_label(label_names[value] if by_name and isinstance(value, int) else value, classes)
            image = StoredImage(table, index, image_column, f"{source} {image_column}") if stored else row[image_column]
            if not stored and (not isinstance(image, str) or not image.strip()):
                collector.skip(split, record_id, source, "missing image path")
                continue
            text = row[text_column]
            add_record(by_split[split], collector, seen, split, record_id, text, label, image_root, image, source,
                       allow_non_english)  # fmt: skip
    left_out = [split for split in loaded if split not in split_of]
    return Dataset(
        name or _default_name(data),
        classes,
        [record for split in SPLITS for record in by_split[split]],
        collector.skipped,
        [],
        image_root or Path("."),
        {"allow_non_english": allow_non_english} | ({"splits_left_out": left_out} if left_out else {}),
        inferred_classes=inferred,
        source_fingerprints=fingerprints,
    )


def _default_name(data: str) -> str:
    if data.startswith(PREFIX) and not is_saved_dataset(Path(data.removeprefix(PREFIX))):
        name, _, config = data.removeprefix(PREFIX).partition(":")
        return name.rsplit("/", 1)[-1] + (f"-{config}" if config else "")
    return Path(data).resolve().name


def save_split_folder(folder: str | Path, dataset: str, out: str | Path, images: str | Path | None = None) -> Path:
    """A CLMLF split folder written by `datasets`' save_to_disk: columns id, text, image (the image files' bytes,
    as the library's Image feature holds them) and label (a ClassLabel of the dataset's classes); dev becomes
    validation, as on the hub. Extracting the result gives the split folder's features (the records read in the
    same order, the same bytes decoded)."""
    import datasets

    from spp_scl.extract.records import read_split_folder

    folder, out = Path(folder), Path(out)
    # Every check of extract's reader; what it would skip for the text is kept, for extract to skip again.
    read = read_split_folder(folder, dataset, Path(images) if images else None, strict=False, allow_non_english=True)
    dataset_records: dict[str, list[Record]] = {}
    for record in read.records:
        dataset_records.setdefault(record.split, []).append(record)
    classes = DATASET_CLASSES[dataset]
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "text": datasets.Value("string"),
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=classes),
        }
    )
    splits = {}
    for split, records in dataset_records.items():
        columns = {
            "id": [record.id for record in records],
            "text": [record.text for record in records],
            "image": [{"bytes": record.image.read_bytes(), "path": None} for record in records],
            "label": [record.label for record in records],
        }
        splits["validation" if split == "dev" else split] = datasets.Dataset.from_dict(columns, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(out))
    return out
