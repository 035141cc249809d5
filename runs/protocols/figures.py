"""The figure a paper would show for a comparison or an ablation table: one bar per row (the mean over seeds, or seeds
and folds), every seed as a dot on it, and the 95% interval of the mean as a whisker; one panel per metric. A row
without a spread (one seed, a deterministic head) has no whisker, as its table cell says "+- n/a"."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np

from spp_scl.runs.trials.seed_summary import HEADLINE, HEADLINE_NAMES

ROW_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974"]


def short_label(label: str) -> str:
    """A row's name without its parenthesised detail, for a tick: "SPP-SCL (cmf-bank fusion, ...)" -> "SPP-SCL";
    the authors' protocol keeps a mark, so its rows stay apart from dev's."""
    short = re.sub(r" \([^)]*\)", "", re.sub(r" \[authors' protocol[^]]*\]", "", label))
    return short + (" [authors]" if "[authors' protocol" in label else "")


def bar_figure(compared: dict, title: str, path: Path, labels: list[str] | None = None) -> Path:
    """`compared`: spp_scl.runs.trials.seed_summary.compare_rows's result (rows with per-seed values and each
    metric's mean and interval). Writes a PNG of accuracy, weighted F1 and macro F1 to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label in (labels or list(compared["rows"])) if label in compared["rows"]]
    rows = [compared["rows"][label] for label in labels]
    width = max(10.0, 0.9 * len(labels) * len(HEADLINE) + 2.0)  # room for each row's tick under every panel
    figure, axes = plt.subplots(1, len(HEADLINE), figsize=(width, 4.8), squeeze=False)
    jitter = np.random.default_rng(0)  # the dots' horizontal spread only: fixed, so a figure is reproducible
    for axis, key in zip(axes[0], HEADLINE):
        lows, highs = [], []
        for position, row in enumerate(rows):
            colour = ROW_COLOURS[position % len(ROW_COLOURS)]
            summary = row[key]
            if summary["mean"] is None:
                continue
            axis.bar(position, summary["mean"], width=0.6, color=colour, alpha=0.45, edgecolor=colour)
            values = [entry[key] for entry in row["per_seed"] if entry[key] is not None]
            offsets = jitter.uniform(-0.15, 0.15, len(values))
            axis.scatter(position + offsets, values, s=14, color=colour, edgecolor="black", linewidth=0.4, zorder=3)
            lows.append(min(values))
            highs.append(max(values))
            if summary["ci95"] is not None:
                low, high = summary["ci95"]
                axis.errorbar(position, summary["mean"], yerr=[[summary["mean"] - low], [high - summary["mean"]]],
                              color="black", capsize=4, linewidth=1.2, zorder=4)  # fmt: skip
                lows.append(low)
                highs.append(high)
        if lows:  # bars start at the axis floor: zoom to the values, with a margin
            margin = max(0.01, 0.15 * (max(highs) - min(lows)))
            axis.set_ylim(max(0.0, min(lows) - margin), min(1.0, max(highs) + margin))
        axis.set_xticks(range(len(labels)))
        axis.set_xticklabels([textwrap.fill(short_label(label), 10) for label in labels], fontsize=8)
        axis.set_ylabel(HEADLINE_NAMES[key])
        axis.set_title(HEADLINE_NAMES[key], fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    folds = any("/" in str(entry["seed"]) for row in rows for entry in row["per_seed"])
    units, where = (
        ("folds x seeds", "held-out folds of train+dev") if folds else ("seeds", f"{compared['split']} split")
    )
    figure.suptitle(textwrap.fill(f"{title} ({where}; dots: {units}; whiskers: 95% interval)", 110),
                    fontsize=10)  # fmt: skip
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
