"""Pictures of a sweep (PNG): dev metric over tau x theta, over lambda, and the spread over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_by(rows, fields, metric):
    """{tuple of field values: mean dev metric over every other field and the seeds}."""
    groups: dict = {}
    for row in rows:
        key = tuple(row["config"][f] for f in fields)
        groups.setdefault(key, []).append(row["dev"][metric])
    return {key: float(np.mean(values)) for key, values in groups.items()}


def plot_sweep(rows: list[dict], metric: str, folder: Path) -> list[Path]:
    plt = _pyplot()
    written = []
    varied = [
        f
        for f in ("temperature", "theta", "ce_weight", "lr", "batch_size")
        if len({row["config"][f] for row in rows}) > 1
    ]
    if "temperature" in varied and "theta" in varied:
        means = _mean_by(rows, ("temperature", "theta"), metric)
        taus = sorted({k[0] for k in means})
        thetas = sorted({k[1] for k in means})
        grid = np.full((len(thetas), len(taus)), np.nan)
        for (tau, theta), value in means.items():
            grid[thetas.index(theta), taus.index(tau)] = value
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(taus)), [f"{t:g}" for t in taus])
        ax.set_yticks(range(len(thetas)), [f"{t:.3g}" for t in thetas])
        ax.set_xlabel("tau (temperature)")
        ax.set_ylabel("theta (two-step threshold)")
        middle = (np.nanmin(grid) + np.nanmax(grid)) / 2
        for (row, col), value in np.ndenumerate(grid):
            if not np.isnan(value):  # dark text on viridis' light upper half, light text on its dark lower half
                shade = "black" if value > middle else "white"
                ax.text(col, row, f"{value:.3f}", ha="center", va="center", color=shade, fontsize=9)
        fig.colorbar(image, ax=ax, label=f"dev {metric} (mean over other axes, seeds)")
        ax.set_title(f"Dev {metric} over tau x theta", fontsize=10)
        fig.tight_layout()
        written.append(folder / "sweep_tau_theta.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    if "ce_weight" in varied:
        groups: dict = {}
        for row in rows:
            groups.setdefault(row["config"]["ce_weight"], []).append(row["dev"][metric])
        lambdas = sorted(groups)
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.errorbar(  # at evenly spaced positions: grid values (1, 5, 10, 50) are categories, not a scale
            range(len(lambdas)),
            [np.mean(groups[v]) for v in lambdas],
            yerr=[np.std(groups[v]) for v in lambdas],
            marker="o",
            capsize=4,
        )
        ax.set_xticks(range(len(lambdas)), [f"{v:g}" for v in lambdas])
        ax.set_xlabel("lambda (cross-entropy weight)")
        ax.set_ylabel(f"dev {metric}")
        ax.set_title(f"Dev {metric} over lambda\n(mean +- std over the other axes and seeds)", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        written.append(folder / "sweep_lambda.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    points: dict = {}
    for row in rows:
        points.setdefault(row["name"], []).append(row["dev"][metric])
    names = sorted(points, key=lambda n: -np.mean(points[n]))
    fig, ax = plt.subplots(figsize=(max(5.5, 0.45 * len(names) + 2), 4.5))
    for index, name in enumerate(names):
        ax.scatter([index] * len(points[name]), points[name], color="tab:blue", alpha=0.7, s=18)
        ax.hlines(np.mean(points[name]), index - 0.3, index + 0.3, color="tab:red")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"dev {metric}")
    ax.set_title(f"Dev {metric} per point over seeds, best first\n(dots: seeds; red line: mean)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    written.append(folder / "sweep_seed_spread.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)
    return written
