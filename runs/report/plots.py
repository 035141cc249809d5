"""The pictures of a run's diagnostics (PNG, matplotlib's Agg backend): t-SNE of the fused features by label, the
same-label distance distributions (the paper's figure 4), confusion matrices and the per-epoch curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


CLASS_COLOURS = ["#1b9e77", "#7570b3", "#d95f02", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
KIND_COLOURS = {"IID": "#1f77b4", "TTD": "#ff7f0e", "ITD": "#2ca02c"}
KIND_NAMES = {"IID": "IID (image-image)", "TTD": "TTD (text-text)", "ITD": "ITD (image-text)"}


def tsne_2d(features: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        features.astype(np.float64)
    )


def plot_tsne(panels: list[tuple[str, np.ndarray, np.ndarray]], class_names: list[str], path: Path) -> Path:
    """panels: (title, 2-D points [N, 2], labels [N]); one scatter per panel, coloured by label."""
    plt = _pyplot()
    columns = min(len(panels), 2)
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.8 * rows), squeeze=False)
    for ax, (title, points, labels) in zip(axes.ravel(), panels):
        for label, name in enumerate(class_names):
            chosen = labels == label
            ax.scatter(
                points[chosen, 0],
                points[chosen, 1],
                s=9,
                alpha=0.75,
                color=CLASS_COLOURS[label % 8],
                label=f"{name} ({int(chosen.sum())})",
                linewidths=0,
            )
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.legend(fontsize=8, markerscale=2, loc="best", framealpha=0.8)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    fig.suptitle("t-SNE of the fused features (classifier input), coloured by true label", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_distance_distributions(
    panels: list[tuple[str, dict[str, dict[int, np.ndarray]]]], path: Path, space: str
) -> Path:
    """panels: (title, distance samples); per panel, the distribution of same-label distances of each kind."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.2), squeeze=False)
    for ax, (title, samples) in zip(axes.ravel(), panels):
        pooled = {kind: np.concatenate(list(by_class.values())) for kind, by_class in samples.items()}
        values = np.concatenate(list(pooled.values()))
        bins = np.linspace(0.0, float(values.max()) * 1.02 + 1e-9, 60)
        for kind, distances in pooled.items():
            ax.hist(
                distances,
                bins=bins,
                density=True,
                histtype="step",
                linewidth=1.6,
                color=KIND_COLOURS[kind],
                label=f"{KIND_NAMES[kind]}, mean {distances.mean():.3g}",
            )
            ax.axvline(distances.mean(), color=KIND_COLOURS[kind], linestyle="--", linewidth=1)
        ax.set_title(f"{title} ({space})", fontsize=11)
        ax.set_xlabel("Euclidean distance between same-label embeddings")
        ax.set_ylabel("density")
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(matrices: list[tuple[str, np.ndarray]], class_names: list[str], path: Path) -> Path:
    """One panel per split: counts written in the cells, colour = share of the true class (row)."""
    plt = _pyplot()
    size = max(3.6, 1.1 * len(class_names) + 1.8)
    fig, axes = plt.subplots(1, len(matrices), figsize=(size * len(matrices) + 0.6, size), squeeze=False)
    for ax, (title, matrix) in zip(axes.ravel(), matrices):
        shares = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for (row, col), count in np.ndenumerate(matrix):
            ax.text(
                col,
                row,
                f"{count}\n{shares[row, col]:.0%}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if shares[row, col] > 0.6 else "black",
            )
        ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
        ax.set_yticks(range(len(class_names)), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=11)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


LOSS_NAMES = {
    "loss_step_one": "step one total",
    "loss_step_two": "step two total",
    "ce": "cross-entropy (weighted)",
    "intra_image": "L_cli (image)",
    "intra_text": "L_clt (text)",
    "inter": "L_clm (inter)",
}
NOT_LOSSES = {"epoch", "lr", "selected", "seconds", "step_two_rate", "train_accuracy", "probe_c", "rule_c_over_P"}


def loss_keys(log: list[dict]) -> list[str]:
    """The per-epoch loss terms a log holds: SPP-SCL's, or whatever another head's step reports (lbcl, macl, ...).
    Step two's total is left out: it is L_clm, already drawn."""
    keys = []
    for line in log:
        for key, value in line.items():
            if (
                key not in keys
                and key not in NOT_LOSSES
                and key != "loss_step_two"
                and not key.startswith(("dev_", "rule_", "ha_"))
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
            ):
                keys.append(key)
    return keys


def plot_curves(
    log: list[dict], selected_epoch: int | None, metric: str, path: Path, theta: float | None = None
) -> Path:
    """Per epoch: training losses; step two's share and the rule's c / P (with theta) and saturated share of S;
    train accuracy against the dev metrics (the overfitting curve); the HA layer weights over dev."""
    plt = _pyplot()
    epochs = [line["epoch"] for line in log]
    fig, grid = plt.subplots(2, 2, figsize=(12, 8))
    axes = grid.ravel()
    for key in loss_keys(log):
        values = [line.get(key, 0.0) for line in log]
        if any(values):
            axes[0].plot(epochs, values, label=LOSS_NAMES.get(key, key), linewidth=1.4)
    axes[0].set_ylabel("mean training loss per iteration")
    axes[0].set_title("Training losses")
    axes[1].plot(epochs, [line.get("step_two_rate", 0.0) for line in log], color="#d62728", label="step two ran")
    if any("rule_c_over_P" in line for line in log):
        axes[1].plot(epochs, [line.get("rule_c_over_P", np.nan) for line in log], color="#1f77b4", label="c / P")
        axes[1].plot(epochs, [line.get("rule_saturated", np.nan) for line in log], color="#7f7f7f", label="S at 1.0")
        if theta is not None:
            axes[1].axhline(theta, color="#1f77b4", linestyle="--", linewidth=1, label=f"theta {theta:.3g}")
    axes[1].set_ylabel("share")
    axes[1].set_title("The two-step rule")
    for key, name in (
        ("dev_accuracy", "dev accuracy"),
        ("dev_f1_weighted", "dev weighted F1"),
        ("dev_f1_macro", "dev macro F1"),
    ):
        axes[2].plot(epochs, [line[key] for line in log], label=name, linewidth=1.4)
    if any("train_accuracy" in line for line in log):
        axes[2].plot(
            epochs,
            [line.get("train_accuracy", np.nan) for line in log],
            label="train accuracy (train mode)",
            color="black",
            linewidth=1.4,
        )
    axes[2].set_ylabel("score")
    axes[2].set_title(f"Train vs dev (selection: {metric})")
    weighted = [line for line in log if "ha_weight_mean" in line]
    if weighted:
        means, spreads = (
            np.array([line["ha_weight_mean"] for line in weighted]),
            np.array([line["ha_weight_std"] for line in weighted]),
        )
        x = [line["epoch"] for line in weighted]
        for layer in range(means.shape[1]):
            axes[3].plot(x, means[:, layer], label=f"layer {layer + 1} of {means.shape[1]}", linewidth=1.4)
            axes[3].fill_between(
                x, means[:, layer] - spreads[:, layer], means[:, layer] + spreads[:, layer], alpha=0.15
            )
        axes[3].set_ylim(-0.02, 1.02)  # sigmoid gates; a flat line at 0.5 is a gate that does nothing
        axes[3].set_title("HA layer weights over dev (mean +- std over posts)")
    else:
        axes[3].set_title("HA layer weights: not logged for this head")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if selected_epoch:
            ax.axvline(
                selected_epoch, color="grey", linestyle=":", linewidth=1.2, label=f"selected epoch {selected_epoch}"
            )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------- one run
