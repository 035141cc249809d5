"""The Markdown parts every table and summary shares: the spread note, the flags cell, the per-seed table and the
footer of paired tests, all from spp_scl.runs.trials.seed_summary.compare_rows's result."""

from __future__ import annotations

from spp_scl.runs.trials.seed_summary import HEADLINE, HEADLINE_NAMES
from spp_scl.runs.trials.statistics import ALPHA, ITEM_TEST, NOT_AVAILABLE, SEED_TEST, p_cell

SPREAD_NOTE = (
    "Cells: mean +- std (ddof=1) over a row's runs (its seeds, or seeds x folds under --folds) [95% Student-t "
    f"interval of the mean]; '+- {NOT_AVAILABLE}': one run, or every run gave the same value (a deterministic head), "
    "so no spread."
)


def flags_cell(row: dict) -> str:
    """'collapsed: seeds 42, 43' for a row with collapsed runs (one class predicted, or macro F1 at or below the
    majority-class level); empty otherwise."""
    seeds = row["collapsed_seeds"]
    if not seeds:
        return ""
    reasons = sorted({entry["collapsed"] for entry in row["per_seed"] if entry["collapsed"]})
    return f"**collapsed** ({len(seeds)} of {len(row['seeds'])} seeds: {'; '.join(reasons)})"


def per_seed_lines(comparison: dict, labels: list[str] | None = None) -> list[str]:
    """A table with one line per (row, seed): the headline metrics on the compared split and the collapse flag."""
    labels = [
        label for label in (list(comparison["rows"]) if labels is None else labels) if label in comparison["rows"]
    ]
    lines = [
        f"Per seed ({comparison['split']} split):",
        "",
        "| row | seed | " + " | ".join(HEADLINE_NAMES[key] for key in HEADLINE) + " | collapsed |",
        "|---|---|" + "---|" * len(HEADLINE) + "---|",
    ]
    for label in labels:
        for entry in comparison["rows"][label]["per_seed"]:
            values = " | ".join("-" if entry[key] is None else f"{entry[key]:.4f}" for key in HEADLINE)
            lines.append(f"| {label} | {entry['seed']} | {values} | {entry['collapsed'] or ''} |")
    return lines


def tests_footer(comparison: dict, labels: list[str] | None = None) -> list[str]:
    """The paired tests of the reference row against each other row: which tests, and what holds at 5%."""
    reference, tests = comparison["reference"], comparison["tests"]
    labels = [label for label in (list(tests) if labels is None else labels) if label in tests]
    if reference is None or not labels:
        return []
    lines = [
        f"Paired tests of **{reference}** against each row ({comparison['split']} split). Over seeds: {SEED_TEST}, "
        "p for each metric. Over items: " + ITEM_TEST + f". `*`: the difference holds at 5% (p < {ALPHA}); "
        f"{NOT_AVAILABLE}: the test does not apply (see the JSON's note). Each test stands alone: no correction for "
        "the number of rows.",
        "",
        "| row | mean difference in accuracy (reference - row) | seeds: p "
        + " | seeds: p ".join(HEADLINE_NAMES[key] for key in HEADLINE)
        + " | items: ensemble accuracy (reference / row) | items: p |",
        "|---|---|" + "---|" * len(HEADLINE) + "---|---|",
    ]
    for label in labels:
        seeds, items = tests[label]["seeds"], tests[label]["items"]
        difference = seeds["accuracy"]["mean_difference"]
        accuracies = (
            f"{items['reference_accuracy']:.4f} / {items['other_accuracy']:.4f}"
            if items.get("reference_accuracy") is not None
            else NOT_AVAILABLE
        )
        lines.append(
            f"| {label} | {'-' if difference is None else f'{difference:+.4f}'} | "
            + " | ".join(p_cell(seeds[key]) for key in HEADLINE)
            + f" | {accuracies} | {p_cell(items)} |"
        )
    return lines
