"""The skipped records: their report beside the cache (`<cache>.skipped.csv`, one row per record with its reason),
and the error of an extraction that finds no usable record.

Every record of the data was skipped (a JSONL without `split`, a wrong `--images`, labels that are not the
dataset's classes): the message says so in one line, naming each reason with its count, up to three examples with
their line and id, and the skipped.csv that lists them all (written beside where the cache would have gone).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from spp_scl.cache.layout import skip_reason_counts
from spp_scl.core.spreadsheet import spreadsheet_safe
from spp_scl.core.storage import write_atomically

EXAMPLES = 3


def examples(skipped: list[dict], limit: int = EXAMPLES) -> list[dict]:
    """Up to `limit` skipped records: the first of each reason (the most common reason first), then the next ones
    in file order."""

    def kind(item: dict) -> str:
        return skip_reason_counts([item])[0][0]

    firsts = [next(item for item in skipped if kind(item) == reason) for reason, _ in skip_reason_counts(skipped)]
    firsts = firsts[:limit]
    rest = [item for item in skipped if not any(item is chosen for chosen in firsts)]
    return firsts + rest[: limit - len(firsts)]


def no_usable_record(data: str | Path, skipped: list[dict], report: Path) -> str:
    """The one-line message: "DATA: no usable record: 60 skipped (60 x unknown split ''); e.g. posts.jsonl:1 (id
    '0'): unknown split '' (train, dev, test); ...; every skipped record with its reason: REPORT"."""
    if not skipped:
        return f"{data}: no usable record: it holds no records"
    counts = ", ".join(f"{n} x {reason}" for reason, n in skip_reason_counts(skipped))
    shown = "; ".join(f"{item['source']} (id {item['id']!r}): {item['reason']}" for item in examples(skipped))
    return (
        f"{data}: no usable record: {len(skipped)} skipped ({counts}); e.g. {shown}; every skipped record with its "
        f"reason: {report}"
    )


def skipped_report_path(cache: Path) -> Path:
    return cache.with_name(cache.name + ".skipped.csv")


def write_skipped_report(cache: Path, skipped: list[dict]) -> None:
    report = skipped_report_path(cache)
    if not skipped:
        report.unlink(missing_ok=True)
        return
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=["split", "id", "source", "reason"])
    writer.writeheader()
    # Ids, sources and reasons come from data files: a cell a spreadsheet would run as a formula is written as text.
    writer.writerows({key: spreadsheet_safe(value) for key, value in row.items()} for row in skipped)
    write_atomically(report, text.getvalue().encode("utf-8"))
