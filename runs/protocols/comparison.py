"""SPP-SCL side by side with the methods it is compared with, all trained on one cache under one protocol.

Papers compare methods trained on different features with different checkpoint rules. Here every method
is a head of the same trainer: identical frozen features, splits, optimiser schedule, dev-only selection
and seeds. This module holds the compared methods (as config overrides of one base config), turns them
into trials for spp_scl.runs.trials.executor.run_trials, and renders the Markdown table (ours beside
spp_scl.runs.protocols.paper_tables.PAPER), with SPP-SCL's paired tests against every other method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.runs.protocols.paper_tables import PAPER, f1_key
from spp_scl.runs.trials.executor import Trial
from spp_scl.runs.trials.seed_summary import HEADLINE, compare_rows, reported_split
from spp_scl.runs.trials.seed_tables import SPREAD_NOTE, flags_cell, per_seed_lines, tests_footer
from spp_scl.runs.trials.statistics import describe, spread_cell, stamped


@dataclass(frozen=True)
class ComparedMethod:
    key: str  # short name for --methods
    label: str  # the row's name in the table (and the trials' name in results.jsonl)
    overrides: dict
    paper_row: str  # its row in spp_scl.runs.protocols.paper_tables.PAPER


METHODS = (
    ComparedMethod("spp-scl", "SPP-SCL (cmf-bank fusion, batch-independent)", {"fusion": "cmf-bank"}, "SPP-SCL"),
    ComparedMethod("spp-scl-faithful", "SPP-SCL paper-faithful (cmf-batch fusion)", {"fusion": "cmf-batch"}, "SPP-SCL"),
    ComparedMethod("clmlf", "CLMLF-style (CE + LBCL; no DBCL)", {"head": "clmlf"}, "CLMLF without DBCL"),
    ComparedMethod("mdse", "MDSE-style (CE + MACL)", {"head": "mdse"}, "MDSE"),
    ComparedMethod("text-only", "text only (SPP-SCL text branch)", {"modality": "text"}, "text only"),
    ComparedMethod("image-only", "image only (SPP-SCL image branch)", {"modality": "image"}, "image only"),
    # The bar every head must clear: logistic regression on the pooled cached features (heads/probe.py).
    ComparedMethod("probe", "linear probe, both modalities (pooled features, C on dev)", {"head": "probe"}, "-"),
    ComparedMethod("probe-text", "linear probe, text only", {"head": "probe", "modality": "text"}, "-"),
    ComparedMethod("probe-image", "linear probe, image only", {"head": "probe", "modality": "image"}, "-"),
)


def variant_methods(variants: dict[str, dict]) -> list[ComparedMethod]:
    """SPP-SCL rows with settings of their own ({name: {field: value}}, from --variant NAME:FIELD=VALUE,...), each
    tested against the SPP-SCL row like every compared method; its label names the settings, so a rerun with the
    same variant finds its finished trials."""
    rows = []
    for name, settings in variants.items():
        shown = ", ".join(
            f"{field}={value:g}" if isinstance(value, float) else f"{field}={value}"
            for field, value in settings.items()
        )
        overrides = {"fusion": "cmf-bank", **settings}
        rows.append(ComparedMethod(f"variant:{name}", f"SPP-SCL {name} ({shown})", overrides, "-"))
    return rows


def select_methods(keys: str | None) -> list[ComparedMethod]:
    """'clmlf,mdse' -> those methods in table order; None -> all."""
    if not keys:
        return list(METHODS)
    wanted = [key.strip() for key in keys.split(",") if key.strip()]
    known = {method.key for method in METHODS}
    unknown = [key for key in wanted if key not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {[method.key for method in METHODS]}")
    return [method for method in METHODS if method.key in wanted]


def methods_for(methods: list[ComparedMethod], base: SPPSCLConfig) -> list[ComparedMethod]:
    """The methods as `base` trains them. On stored views (base.train_views not clean) the compared heads are
    complete: CLMLF-style with its full loss (CE + LBCL + DBCL, beside CLMLF's own number) and MDSE-style with its
    augmentations (the views it is fed), and their names say so; on clean features they stay as they are."""
    if base.train_views == "clean":
        return list(methods)
    adapted = []
    for method in methods:
        if method.key == "clmlf" and base.dbcl_weight > 0:
            method = replace(method, label="CLMLF-style (CE + LBCL + DBCL on stored views)", paper_row="CLMLF")
        elif method.key == "mdse":
            method = replace(method, label="MDSE-style (CE + MACL; augmented inputs from stored views)")
        adapted.append(method)
    return adapted


PROTOCOLS = ("dev", "authors")
AUTHORS_LABEL = " [authors' protocol: checkpoint picked on test, optimistic]"


def with_protocols(methods: list[ComparedMethod], protocols: str | None) -> list[ComparedMethod]:
    """The methods under each selection protocol asked ('dev,authors'): dev as they are; authors as rows of their
    own (config.selection "authors": a checkpoint every 5 epochs, the best on test), so the table shows how much
    of a number the protocol makes. The same seeds as dev: the paired test over seeds measures the inflation."""
    wanted = [name.strip() for name in (protocols or "dev").split(",") if name.strip()]
    unknown = [name for name in wanted if name not in PROTOCOLS]
    if unknown or not wanted:
        raise ValueError(f"unknown protocol(s) {unknown or wanted}; known: {', '.join(PROTOCOLS)}")
    rows = list(methods) if "dev" in wanted else []
    if "authors" in wanted:
        rows += [
            replace(
                m,
                key=f"{m.key}@authors",
                label=m.label + AUTHORS_LABEL,
                overrides={**m.overrides, "selection": "authors"},
            )
            for m in methods
        ]
    return rows


def views_note(base: SPPSCLConfig) -> str:
    """What the heads saw in training, for the table's protocol line."""
    if base.train_views == "clean":
        return "clean cached features"
    when = "a new view at every forward" if base.train_views == "forward" else "a view per record and epoch"
    return f"stored views ({when}; {base.view_parts} parts; the linear probe: clean features)"


def comparison_trials(methods: list[ComparedMethod], base: SPPSCLConfig, seeds: int) -> list[Trial]:
    """Each method at seeds base.seed, base.seed + 1, ... The head's dataset-specific values (CLMLF's depths)
    come from base.preset when the config resolves them (heads/config.py)."""
    return [Trial(method.label, method.overrides, base.seed + i) for method in methods for i in range(seeds)]


def trainable_parameters(row: dict) -> int | None:
    """From the trial's run folder (runs/trainer writes it into config.json); None if the folder is gone."""
    path = Path(row["run_dir"]) / "config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("trainable_parameters")


def reference_label(methods: list[ComparedMethod]) -> str | None:
    """The row every other is tested against: SPP-SCL (the batch-independent fusion, else the paper-faithful one)."""
    for key in ("spp-scl", "spp-scl-faithful"):
        for method in methods:
            if method.key == key:
                return method.label
    return methods[0].label if methods else None


def summarise_dataset(dataset: str, methods: list[ComparedMethod], rows: list[dict]) -> dict:
    """Per method: the split reported, accuracy, weighted and macro F1 over seeds (spread, interval, per seed, per
    class, collapse: spp_scl.runs.trials.seed_summary), paper numbers, parameter count, seconds per epoch; and
    SPP-SCL's paired tests against every other method."""
    split, split_note = reported_split(rows)
    groups = {method.label: [row for row in rows if row["name"] == method.label] for method in methods}
    present = [method for method in methods if groups[method.label]]
    compared = compare_rows({m.label: groups[m.label] for m in present}, reference_label(present), split)
    summary = {"dataset": dataset, "split": split, "split_note": split_note, "f1": f1_key(dataset)}
    summary["reference"] = compared["reference"]
    summary["methods"] = []
    for method in present:
        mine = groups[method.label]
        parameters = {trainable_parameters(row) for row in mine} - {None}
        summary["methods"].append(
            {
                "key": method.key,
                "label": method.label,
                **compared["rows"][method.label],
                "paper": PAPER.get(method.paper_row, {}).get(dataset),
                "trainable_parameters": parameters.pop() if len(parameters) == 1 else None,
                "seconds_per_epoch": describe([row["seconds_per_epoch"] for row in mine]),
                "epochs_run": describe([row["epochs_run"] for row in mine]),
                "selected_epoch": describe([row["selected_epoch"] for row in mine]),
            }
        )
    summary["tests"] = compared["tests"]
    return summary


def ensemble_cell(ensemble: dict | None) -> str:
    """The seed ensemble's metrics (its seeds' mean probabilities; under --folds each fold's ensemble on its part,
    joined), '-' for one seed."""
    if ensemble is None:
        return "-"
    return " / ".join(f"{ensemble[key]:.4f}" for key in HEADLINE) + f" ({ensemble['seeds']} seeds)"


def render_comparison(summaries: list[dict], base_note: str, data_note: str | None = None) -> str:
    """One Markdown table per dataset, its per-seed table and its paired tests; `base_note` says under which
    protocol (epochs, batch, jobs) ours ran; `data_note` (the demo's stamp) heads the title."""
    title = stamped("SPP-SCL and the methods it is compared with, on the same cached features", data_note)
    lines = [
        f"# {title}",
        "",
        f"Ours: checkpoints selected as each heading says (rows marked with the authors' protocol: on test). {base_note}",
        "Paper: the numbers reported in the SPP-SCL paper (each method trained its own way, on its own "
        "features). Seconds per epoch include the dev pass.",
        "",
        SPREAD_NOTE,
        "",
    ]
    for summary in summaries:
        split, f1 = summary["split"], summary["f1"]
        paper_f1 = "macro" if f1 == "f1_macro" else "weighted"
        # Two classes (sarcasm): the positive class's F1 too, which the MMSD papers report beside macro F1.
        classes = next((list(m["per_class_f1"]) for m in summary["methods"] if m.get("per_class_f1")), [])
        positive = classes[1] if len(classes) == 2 else None
        lines += [
            f"## {summary['dataset']}: {summary['split_note']}; the paper's F1 is {paper_f1}",
            "",
            "| method | runs | ours accuracy | ours weighted F1 | ours macro F1 | "
            + (f"ours F1 of {positive} | " if positive else "")
            + "paper accuracy | paper F1 | seed ensemble: accuracy / weighted F1 / macro F1 | trainable parameters "
            "| seconds per epoch | selected epoch | flags |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if positive else ""),
        ]
        for method in summary["methods"]:
            paper = method["paper"]
            parameters = method["trainable_parameters"]
            cells = " | ".join(spread_cell(method[key]) for key in HEADLINE)
            if positive:
                positive_f1 = (method.get("per_class_f1") or {}).get(positive)
                cells += " | " + (spread_cell(positive_f1) if positive_f1 and positive_f1.get("n") else "-")
            lines.append(
                f"| {method['label']} | {len(method['seeds'])} | {cells} | "
                f"{f'{paper[0]:.4f}' if paper else '-'} | {f'{paper[1]:.4f}' if paper else '-'} | "
                f"{ensemble_cell(method['ensemble'])} | {f'{parameters:,}' if parameters is not None else '-'} | "
                f"{method['seconds_per_epoch']['mean']:.1f} | {method['selected_epoch']['mean']:.1f} | "
                f"{flags_cell(method)} |"
            )
        compared = {"split": split, "reference": summary["reference"], "tests": summary["tests"]}
        compared["rows"] = {method["label"]: method for method in summary["methods"]}
        lines += ["", *tests_footer(compared), "", *per_seed_lines(compared), ""]
    return "\n".join(lines)
