"""The one-page Markdown report of a run (`<run>/report.md`): what a person opens first.

Config, encoders, metrics, the modality distances (untrained head against the selected one) and the pictures
that runs/report/diagnostics.py drew into `<run>/diagnostics/`. Pictures are linked relative to the run folder, so the
folder can be moved or shared as a whole.
"""

from __future__ import annotations

import json
from pathlib import Path

from spp_scl.runs.predict.run_folder import RunFolder
from spp_scl.runs.report.diagnostics import DISTANCE_KINDS
from spp_scl.runs.report.run_files import read_log, read_metrics
from spp_scl.runs.trials.statistics import collapse_reason

CONFIG_FIELDS = (
    "preset",
    "fusion",
    "modality",
    "two_step",
    "intra_loss",
    "inter_loss",
    "text_layers_last",
    "epochs",
    "batch_size",
    "lr",
    "lr_step_size",
    "lr_gamma",
    "weight_decay",
    "ce_weight",
    "temperature",
    "theta",
    "dropout",
    "embed_dim",
    "seed",
    "selection_metric",
    "patience",
)


def _number(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _metrics_section(metrics: dict, class_names: list[str]) -> list[str]:
    splits = [s for s in ("dev", "test") if s in metrics]
    lines = [f"Selected epoch **{metrics.get('selected_epoch')}** by dev {metrics.get('selection_metric')}.", ""]
    lines += _table(
        ["split", "records", "accuracy", "weighted F1", "macro F1"],
        [
            [
                s,
                str(metrics[s]["records"]),
                _number(metrics[s]["accuracy"]),
                _number(metrics[s]["f1_weighted"]),
                _number(metrics[s]["f1_macro"]),
            ]
            for s in splits
        ],
    )
    checks = [(s, collapse_reason(metrics[s]["confusion_matrix"])) for s in splits if "confusion_matrix" in metrics[s]]
    if checks:
        lines += [
            "",
            "Collapse check (predictions covering one class, or macro F1 at or below the majority-class level): "
            + "; ".join(f"{s} **collapsed**: {reason}" if reason else f"{s} ok" for s, reason in checks)
            + ".",
        ]
    lines += ["", "Per class (precision / recall / F1, support):", ""]
    lines += _table(
        ["class", *splits],
        [
            [
                name,
                *[
                    f"{_number(metrics[s]['per_class'][name]['precision'], 3)} / "
                    f"{_number(metrics[s]['per_class'][name]['recall'], 3)} / "
                    f"{_number(metrics[s]['per_class'][name]['f1'], 3)} ({metrics[s]['per_class'][name]['support']})"
                    for s in splits
                ],
            ]
            for name in class_names
        ],
    )
    return lines


def _distance_section(diagnostics: dict, class_names: list[str]) -> list[str]:
    lines = [
        "Mean Euclidean distance between same-label embeddings: IID image-image, TTD text-text, ITD image-text "
        "(" + diagnostics["definitions"] + "). The paper's claim: training brings the three close together. "
        "The *different labels* rows are the same means over pairs with different labels: same-label "
        "distances well below them mean the classes lie apart.",
        "",
    ]
    for split in diagnostics["splits"]:
        by_state = diagnostics["distances"][split]
        kinds = [k for k in DISTANCE_KINDS if k in by_state["trained"]["raw"]]
        if not kinds:
            return ["This head has no per-modality aligned embeddings (t, v), so no modality distances.", ""]
        rows = []
        for state in ("untrained", "trained"):
            raw = by_state[state]["raw"]
            rows.append([f"{state}, overall", *[_number(raw[k]["overall"]) for k in kinds], _spread(raw, kinds)])
            for name in class_names:
                rows.append([f"{state}, {name}", *[_number(raw[k]["per_class"].get(name)) for k in kinds], ""])
            rows.append([f"{state}, *different labels*", *[_number(raw[k].get("different_label")) for k in kinds], ""])
        lines += [f"**{split}**, raw embeddings:", ""]
        lines += _table(["head, pairs", *kinds, "max/min overall"], rows)
        unit = []
        for state in ("untrained", "trained"):
            summary = by_state[state]["normalised"]
            unit.append(
                [f"{state}, same label", *[_number(summary[k]["overall"]) for k in kinds], _spread(summary, kinds)]
            )
            unit.append(
                [f"{state}, *different labels*", *[_number(summary[k].get("different_label")) for k in kinds], ""]
            )
        lines += [
            "",
            f"**{split}**, L2-normalised embeddings (the space the contrastive losses use; "
            "the largest possible distance is 2):",
            "",
        ]
        lines += _table(["head, pairs", *kinds, "max/min"], unit) + [""]
    return lines


def _spread(summary: dict, kinds: list[str]) -> str:
    """max/min of the overall distances: 1.00 means the three are equal."""
    values = [summary[k]["overall"] for k in kinds if summary[k]["overall"]]
    return f"{max(values) / min(values):.2f}" if len(values) > 1 else "-"


def _training_section(log: list[dict], theta: float) -> list[str]:
    """The selected epoch and the last one: train vs dev accuracy, the rule's c / P against theta, m, the share of S
    saturated at 1.0, and the HA layer weights over dev (mean +- std over posts)."""
    chosen = [line for line in log if line.get("selected")]
    if not chosen:
        return []
    rows = []
    for name, line in (("selected", chosen[-1]), ("last", log[-1])):
        weights = line.get("ha_weight_mean")
        rows.append(
            [
                f"{name} ({line['epoch']})",
                _number(line.get("train_accuracy")),
                _number(line.get("dev_accuracy")),
                _number(line.get("step_two_rate"), 3),
                _number(line.get("rule_c_over_P"), 3),
                _number(line.get("rule_m"), 3),
                _number(line.get("rule_saturated"), 3),
                ", ".join(f"{m:.3f} +- {s:.3f}" for m, s in zip(weights, line["ha_weight_std"])) if weights else "-",
            ]
        )
    header = ["epoch", "train acc", "dev acc", "step two", f"c / P (theta {theta:.3g})", "m", "S at 1.0", "HA weights"]
    return ["", "## Training (log.jsonl)", "", *_table(header, rows)]


def write_report(run_dir: str | Path, diagnostics: dict | None = None) -> Path:
    """Write `<run>/report.md` from the run's files and the diagnostics (read from diagnostics/diagnostics.json
    when not given)."""
    run = RunFolder(run_dir)  # a finished run only
    run.check_fingerprint_record()  # the encoders' settings described below are those the head trained with
    if diagnostics is None:
        path = run.path / "diagnostics" / "diagnostics.json"
        diagnostics = json.loads(path.read_text()) if path.is_file() else None
    metrics = read_metrics(run.path / "metrics.json", run.class_names)  # checked: one line when not train's
    config = run.config.to_dict()
    fingerprint = run.fingerprint
    log = read_log(run.path / "log.jsonl")
    epochs_run = len(log)
    seconds = [line.get("seconds", 0.0) for line in log]

    lines = [
        f"# Run report: {run.path.name}",
        "",
        f"Run folder `{run.path}`; trained on the cache `{run.cache}` "
        f"({fingerprint.get('dataset', {}).get('name', 'unknown dataset')}; classes {', '.join(run.class_names)}).",
        f"Epochs run: {epochs_run}"
        + (
            f", {sum(seconds) / len(seconds):.1f} s per epoch on {run.run_config.get('device', '?')}."
            if seconds
            else "."
        ),
        "",
    ]
    if "text" in fingerprint:
        text, image = fingerprint["text"], fingerprint["image"]
        lines += [
            f"Encoders (frozen): text `{text.get('model')}` layers {run.text_layers} (of {text.get('layers')}), "
            f"max {text.get('max_length')} tokens; image `{image.get('name')}` "
            f"(resize {image['preprocess']['resize']}, crop {image['preprocess']['crop']}); "
            f"features stored as {fingerprint.get('dtype')}.",
            "",
        ]
    lines += ["## Metrics", ""]
    lines += _metrics_section(metrics, run.class_names) if metrics else ["No metrics.json: the run did not finish."]
    lines += _training_section(log, run.config.theta)
    if diagnostics:
        pictures = diagnostics["pictures"]
        lines += ["", "## Modality distances (untrained head vs selected checkpoint)", ""]
        lines += _distance_section(diagnostics, run.class_names)
        captions = [
            ("distances_raw", "Same-label distance distributions (raw embeddings; dashed: means)"),
            ("distances_normalised", "Same-label distance distributions (L2-normalised embeddings)"),
            ("tsne", "t-SNE of the fused features, coloured by true label"),
            ("confusion", "Confusion matrices of the selected checkpoint"),
            ("curves", "Per-epoch curves (dotted: the selected epoch)"),
        ]
        lines += ["## Pictures", ""]
        for key, caption in captions:
            if key in pictures:
                lines += [f"**{caption}**", "", f"![{caption}]({pictures[key]})", ""]
    else:
        lines += ["", "No diagnostics yet: run `spp-scl report " + str(run.path) + "`.", ""]
    lines += [
        "## Config",
        "",
        "`" + ", ".join(f"{k}={config[k]}" for k in CONFIG_FIELDS if k in config) + "`",
        "",
        "Full config: `config.json`; weights: `model.safetensors` with `head.json`; per-epoch log: "
        "`log.jsonl`; predictions: `predictions.csv`.",
        "",
    ]
    report = run.path / "report.md"
    report.write_text("\n".join(lines))
    return report
