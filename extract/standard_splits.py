"""The standard splits the field's numbers are reported on, recognised by content so that `extract` can say whether
a split folder holds them: the field's results are only comparable on the standard split.

A split's content hash is over its records' [id, text, label] in file order (json.dumps of the list), so the same
split re-indented or re-saved is still recognised; any changed, added, removed or reordered record is not. Recorded
here: the CLMLF split of MVSA-Single's train and dev files (the test file, and the other datasets' files, were not at
hand when this table was made: for them extract says that it cannot tell).
"""

from __future__ import annotations

import hashlib
import json

# dataset -> split -> (records, content hash)
STANDARD_SPLITS: dict[str, dict[str, tuple[int, str]]] = {
    "mvsa-single": {
        "train": (3611, "12adb3689c75529ffa7b4dad3cb95da5e9998fda0bb5a6a668898f2ed3521b41"),
        "dev": (450, "96d4868401812f1ae8afa04fc0c111b983e8785cfe601ed1969f0852b8dd7c13"),
    },
}


def content_sha256(rows: list) -> str:
    """The hash of a split file's records as [id, text, label] (CLMLF's keys id, text, emotion_label)."""
    triples = [
        [str(row.get("id")), row.get("text"), row.get("emotion_label")] if isinstance(row, dict) else row
        for row in rows
    ]
    return hashlib.sha256(json.dumps(triples, ensure_ascii=False).encode()).hexdigest()


def split_note(dataset: str, rows_by_split: dict[str, list]) -> str:
    """One line: the standard CLMLF split, or how these files differ from it, or that it cannot be told."""
    standard = STANDARD_SPLITS.get(dataset, {})
    matched, differing, unknown = [], [], []
    for split, rows in rows_by_split.items():
        if split not in standard:
            unknown.append(split)
        elif (len(rows), content_sha256(rows)) == standard[split]:
            matched.append(split)
        else:
            count = standard[split][0]
            differing.append(
                f"{split} ({len(rows):,} records, the standard {count:,}"
                + (")" if len(rows) != count else "; the same number, other content or order)")
            )
    if differing:
        return (
            f"note: not the standard CLMLF split of {dataset}: {', '.join(differing)} differ; results on it are not "
            "comparable with the papers' numbers"
        )
    parts = []
    if matched:
        parts.append(f"the standard CLMLF split of {dataset} ({', '.join(matched)} match)")
    if unknown:
        parts.append(f"{', '.join(unknown)}: no standard split on record here to compare with")
    return "note: " + "; ".join(parts)
