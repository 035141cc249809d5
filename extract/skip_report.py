"""The error of an extraction that finds no usable record: why the records were skipped, with counts and examples.

Every record of the data was skipped (a JSONL without `split`, a wrong `--images`, labels that are not the
dataset's classes): the message says so in one line, naming each reason with its count, up to three examples with
their line and id, and the skipped.csv that lists them all (written beside where the cache would have gone).
"""

from __future__ import annotations

from pathlib import Path

from spp_scl.cache.layout import skip_reason_counts

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
