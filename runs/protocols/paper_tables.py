"""The paper's tables 3-7 as configurations of one trainer, and the Markdown that sets ours beside the paper's.

Each row is (our label, config overrides, the paper's row name). The paper's numbers (accuracy, F1; F1 is
weighted for MVSA, macro for HFM) are those the paper reports. Ours: accuracy, weighted and macro F1 over
seeds with their 95% intervals, and the full model's paired tests against every other row (tables.json holds the
per-seed and per-class values).
"""

from __future__ import annotations

import json
from pathlib import Path

from spp_scl.runs.protocols.figures import bar_figure
from spp_scl.runs.trials.seed_summary import HEADLINE, compare_rows, reported_split
from spp_scl.runs.trials.seed_tables import SPREAD_NOTE, flags_cell, per_seed_lines, tests_footer
from spp_scl.runs.trials.statistics import spread_cell, stamped

SARCASM_DATASETS = ("hfm", "mmsd2")  # their papers' F1 is macro over the two classes

PAPER = {  # (accuracy, F1) per dataset and row
    "SPP-SCL": {"mvsa-single": (0.8133, 0.8015), "mvsa-multiple": (0.7871, 0.7753), "hfm": (0.9469, 0.9450)},
    "one-step": {"mvsa-single": (0.7956, 0.7684), "mvsa-multiple": (0.7276, 0.6929), "hfm": (0.8800, 0.8765)},
    "without intra": {"mvsa-single": (0.7289, 0.7040), "mvsa-multiple": (0.7688, 0.7500), "hfm": (0.7812, 0.7753)},
    "without inter": {"mvsa-single": (0.7244, 0.7170), "mvsa-multiple": (0.7459, 0.7411), "hfm": (0.9427, 0.9409)},
    "without CMF": {"mvsa-single": (0.7289, 0.7482), "mvsa-multiple": (0.7453, 0.7389), "hfm": (0.8117, 0.8260)},
    "HA last 3": {"mvsa-single": (0.7667, 0.7565)},
    "HA last 2": {"mvsa-single": (0.8222, 0.8181)},
    "HA last 1": {"mvsa-single": (0.7133, 0.7025)},
    "text only": {"mvsa-single": (0.7111, 0.6970), "mvsa-multiple": (0.6759, 0.6624), "hfm": (0.8389, 0.8326)},
    "image only": {"mvsa-single": (0.6467, 0.6155), "mvsa-multiple": (0.6188, 0.6098), "hfm": (0.7277, 0.7138)},
    "CLMLF": {"mvsa-single": (0.7533, 0.7346), "mvsa-multiple": (0.7200, 0.6983), "hfm": (0.8543, 0.8487)},
    # CLMLF's own ablation (its table 3) without data-based contrastive learning: what our CLMLF-style head is.
    "CLMLF without DBCL": {"mvsa-single": (0.7378, 0.7291)},
    "MDSE": {"mvsa-single": (0.7622, 0.7571), "mvsa-multiple": (0.7231, 0.7012)},
}

FULL = ("SPP-SCL (two-step, intra + inter, CMF, HA over all cached layers)", {}, "SPP-SCL")
TABLES = {
    3: ("SPP-SCL per dataset", [FULL]),
    4: ("Two-step vs one-step training", [FULL, ("one-step (all losses summed)", {"two_step": False}, "one-step")]),
    5: (
        "Without the intra- or inter-modal losses",
        [
            FULL,
            ("without L_cli, L_clt (intra)", {"intra_loss": False}, "without intra"),
            ("without L_clm (inter)", {"inter_loss": False}, "without inter"),
        ],
    ),
    6: (
        "Hierarchical attention over the last k layers",
        [
            FULL,
            ("HA over the last 3 layers", {"text_layers_last": 3}, "HA last 3"),
            ("HA over the last 2 layers", {"text_layers_last": 2}, "HA last 2"),
            ("HA over the last 1 layer", {"text_layers_last": 1}, "HA last 1"),
        ],
    ),
    7: (
        "Fusion and single modalities",
        [
            FULL,
            ("without CMF (concatenation)", {"fusion": "concat"}, "without CMF"),
            ("image only", {"modality": "image"}, "image only"),
            ("text only", {"modality": "text"}, "text only"),
            # Not in the paper: the bar a trained head must clear on the same features (heads/probe.py).
            ("linear probe on pooled features (not in the paper)", {"head": "probe"}, "-"),
        ],
    ),
}


def table_rows(numbers: list[int]) -> list[tuple[str, dict, str]]:
    """The distinct rows of the asked tables (the full model once)."""
    rows, seen = [], set()
    for number in numbers:
        if number not in TABLES:
            raise ValueError(f"table {number}: the paper's tables here are {sorted(TABLES)}")
        for row in TABLES[number][1]:
            if row[0] not in seen:
                seen.add(row[0])
                rows.append(row)
    return rows


def f1_key(dataset: str) -> str:
    """The papers' F1: macro for sarcasm (two classes: HFM, MMSD2.0), weighted for MVSA."""
    return "f1_macro" if dataset in SARCASM_DATASETS else "f1_weighted"


def summarise_tables(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Per dataset: every row over its seeds and the full model's paired tests against each other row
    (spp_scl.runs.trials.seed_summary.compare_rows), on the test split when every trial has one, else dev."""
    summaries = {}
    for dataset, trial_rows in results.items():
        split, split_note = reported_split(trial_rows)
        groups: dict[str, list[dict]] = {}
        for row in trial_rows:
            groups.setdefault(row["name"], []).append(row)
        summaries[dataset] = {**compare_rows(groups, FULL[0], split), "split_note": split_note}
    return summaries


def render_table(
    number: int,
    results: dict[str, list[dict]],
    seeds: int,
    data_note: str | None = None,
    summaries: dict[str, dict] | None = None,
) -> str:
    """`results`: {dataset: result rows (one per trial, with 'name', 'seed', 'dev', 'test', 'run_dir')};
    `summaries`: summarise_tables(results), when the caller has it already."""
    title, rows = TABLES[number]
    summaries = summaries if summaries is not None else summarise_tables(results)
    lines = [f"## {stamped(f'Table {number}: {title}', data_note)}", "", SPREAD_NOTE, ""]
    for dataset, compared in summaries.items():
        f1 = f1_key(dataset)
        labels = [label for label, _, _ in rows if label in compared["rows"]]
        lines += [
            f"### {dataset} ({compared['split_note']}; ours over {seeds} seeds; "
            f"the paper's F1 is {'macro' if f1 == 'f1_macro' else 'weighted'})",
            "",
            "| configuration | runs | ours accuracy | ours weighted F1 | ours macro F1 | paper accuracy | paper F1 "
            "| flags |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, _, paper_name in rows:
            if label not in compared["rows"]:
                continue
            mine = compared["rows"][label]
            paper = PAPER.get(paper_name, {}).get(dataset)
            paper_cells = (f"{paper[0]:.4f}", f"{paper[1]:.4f}") if paper else ("-", "-")
            cells = " | ".join(spread_cell(mine[key]) for key in HEADLINE)
            lines.append(
                f"| {label} | {len(mine['seeds'])} | {cells} | {paper_cells[0]} | {paper_cells[1]} | "
                f"{flags_cell(mine)} |"
            )
        footer = tests_footer(compared, labels)
        lines += ["", *footer, *([""] if footer else []), *per_seed_lines(compared, labels), ""]
    return "\n".join(lines)


def write_tables(
    numbers: list[int], results: dict[str, list[dict]], seeds: int, folder: Path, data_note: str | None = None
) -> list[Path]:
    """table<N>.md and table<N>-<dataset>.png for each asked table, and tables.json: per dataset every row's
    statistics and tests."""
    summaries = summarise_tables(results)
    written = []
    for number in numbers:
        path = folder / f"table{number}.md"
        path.write_text(render_table(number, results, seeds, data_note, summaries))
        written.append(path)
        title, rows = TABLES[number]
        for dataset, compared in summaries.items():  # the same rows as a figure: bars, seeds, intervals
            figure_title = stamped(f"Table {number}: {title}, {dataset}", data_note)
            labels = [label for label, _, _ in rows]
            written.append(bar_figure(compared, figure_title, folder / f"table{number}-{dataset}.png", labels))
    record = {
        "data_note": data_note,
        "tables": {str(number): [label for label, _, _ in TABLES[number][1]] for number in numbers},
        "datasets": summaries,
    }
    (folder / "tables.json").write_text(json.dumps(record, indent=1))
    return written
