"""Rows from several results.jsonl files (of `compare`, `tables` or `sweep` runs on different caches) in one table:
each row over its seeds as the tables report it, and the first row's paired tests against every other (the paired
t-test over matched seeds per metric, the exact McNemar test over items on the seed ensembles). For comparisons
that no single command makes, such as the same head on caches extracted with different settings.

    python -m bench.compare_results --row first=out/first/mvsa-single/results.jsonl \
        --row mean=out/mean/mvsa-single/results.jsonl --split dev
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spp_scl.runs.trials.seed_summary import HEADLINE, HEADLINE_NAMES, compare_rows
from spp_scl.runs.trials.statistics import p_cell, spread_cell


def read_rows(path: Path, name: str | None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if name is None or row.get("name") == name]


def table(groups: dict[str, list[dict]], split: str) -> str:
    reference = next(iter(groups))
    compared = compare_rows(groups, reference, split)
    lines = [
        "| row | seeds | "
        + " | ".join(HEADLINE_NAMES[key] for key in HEADLINE)
        + " | p (seeds: acc / wF1 / mF1) | p (items) |",
        "|---|---|" + "---|" * len(HEADLINE) + "---|---|",
    ]
    for label, row in compared["rows"].items():
        test = compared["tests"].get(label)
        seeds_p = " / ".join(p_cell(test["seeds"][key], 3) for key in HEADLINE) if test else "reference"
        lines.append(
            f"| {label} | {len(row['seeds'])} | "
            + " | ".join(spread_cell(row[key]) for key in HEADLINE)
            + f" | {seeds_p} | {p_cell(test['items'], 3) if test else ''} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--row", action="append", required=True, metavar="LABEL=RESULTS_JSONL")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--name", default=None, help="keep only the rows of this name (the tables' row label)")
    args = parser.parse_args(argv)
    groups = {}
    for given in args.row:
        label, _, path = given.partition("=")
        groups[label] = read_rows(Path(path), args.name)
        if not groups[label]:
            print(f"--row {given}: no results row", file=sys.stderr)
            return 2
    print(table(groups, args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
