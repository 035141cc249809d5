"""Dev metrics of run folders grouped by variant: mean +- std over seeds, selected epochs, and the seed ensemble
(the seeds' dev probabilities averaged, what `spp-scl predict RUN RUN ...` serves).

Run folders are grouped by their name without a trailing "-s<seed>" (`runs/out/acc/proj-ema99-s42` -> variant
`proj-ema99`); each must hold `metrics.json` and `predictions.csv` (what `spp-scl train` writes).

    python -m bench.seed_runs runs/out/acc            # a Markdown table on stdout
    python -m bench.seed_runs runs/out/acc --json     # the same as JSON

The ensemble row is optimistic: each member's epoch was selected on the same dev split it is scored on.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from pathlib import Path

import numpy as np

from spp_scl.runs.train.metrics import classification_metrics


def dev_probabilities(run_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(class names, labels [N], probabilities [N, C]) of the dev rows of a run's predictions.csv, in id order."""
    with (run_dir / "predictions.csv").open(newline="") as handle:
        rows = sorted((row for row in csv.DictReader(handle) if row["split"] == "dev"), key=lambda row: row["id"])
    names = [key[2:] for key in rows[0] if key.startswith("p_")]
    labels = np.array([names.index(row["label"]) for row in rows])
    probabilities = np.array([[float(row[f"p_{name}"]) for name in names] for row in rows])
    return names, labels, probabilities


def summarise(root: Path) -> dict[str, dict]:
    variants: dict[str, list[Path]] = {}
    for metrics in sorted(root.glob("*/metrics.json")):
        variant = re.sub(r"-s\d+$", "", metrics.parent.name)
        variants.setdefault(variant, []).append(metrics.parent)
    summary = {}
    for variant, runs in variants.items():
        metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
        accuracy = [m["dev"]["accuracy"] for m in metrics]
        f1 = [m["dev"]["f1_weighted"] for m in metrics]
        read = [dev_probabilities(run) for run in runs]  # (names, labels, probabilities) per seed
        names, labels, _ = read[0]
        mean = np.mean([probabilities for _, _, probabilities in read], axis=0)
        ensemble = classification_metrics(labels, mean.argmax(1), names)
        summary[variant] = {
            "seeds": [run.name.rsplit("-s", 1)[-1] for run in runs],
            "accuracy": [statistics.mean(accuracy), statistics.stdev(accuracy) if len(runs) > 1 else 0.0],
            "f1_weighted": [statistics.mean(f1), statistics.stdev(f1) if len(runs) > 1 else 0.0],
            "selected_epochs": [m["selected_epoch"] for m in metrics],
            "ensemble": {"accuracy": ensemble["accuracy"], "f1_weighted": ensemble["f1_weighted"]},
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="a folder of run folders named <variant>-s<seed>")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    summary = summarise(args.root)
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print("| variant | seeds | dev accuracy | dev weighted F1 | selected epochs | seed ensemble (acc / F1) |")
    print("|---|---|---|---|---|---|")
    for variant, row in summary.items():
        print(
            f"| {variant} | {len(row['seeds'])} | {row['accuracy'][0]:.4f} +- {row['accuracy'][1]:.4f} | "
            f"{row['f1_weighted'][0]:.4f} +- {row['f1_weighted'][1]:.4f} | "
            f"{', '.join(map(str, row['selected_epochs']))} | "
            f"{row['ensemble']['accuracy']:.4f} / {row['ensemble']['f1_weighted']:.4f} |"
        )


if __name__ == "__main__":
    main()
