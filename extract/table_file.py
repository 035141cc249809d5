"""A JSONL or CSV file of records: `image`, `text`, `label`, `split` (and optionally `id`) per row, read into the
records of spp_scl.extract.records with the same checks and skip rules as a split folder."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from spp_scl.extract.records import (
    DATASET_CLASSES,
    SPLIT_ALIASES,
    SPLITS,
    BadInput,
    Dataset,
    Record,
    SkipCollector,
    add_record,
    parse_label,
)
from spp_scl.extract.split_assignment import assign_splits


def _generic_rows(path: Path, collector: SkipCollector):
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
    collector = SkipCollector(strict)
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
        add_record(
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
