"""What the alignment did, for one run: the paper's modality distances and pictures, written into the run folder.

Distances (IID, TTD, ITD), on the aligned embeddings v (image) and t (text) that the contrastive losses act on:
- IID: mean Euclidean distance ||v_i - v_j|| over pairs of distinct samples with the same label;
- TTD: the same on t;
- ITD: mean ||v_i - t_j|| over all (i, j) with y_i = y_j, i = j included (a sample's own text is a
  same-label text, as in the inter-modal loss, and v_i and t_i are different vectors).
Per class over that class's pairs; "overall" over all same-label pairs pooled. Computed on the raw embeddings
(the paper's Euclidean distance) and on the L2-normalised ones (the unit sphere where the contrastive losses
compare them, so that a change of scale during training does not read as alignment).
Each for the untrained head (rebuilt exactly as the trainer initialised it) and the selected checkpoint.

Pictures (PNG, in <run>/diagnostics/): t-SNE of the fused features by label, the distributions of the same-label
distances (the paper's figure 4), the confusion matrices, the per-epoch curves.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spp_scl.runs.predict.run_folder import RunFolder
from spp_scl.runs.report.plots import plot_confusion, plot_curves, plot_distance_distributions, plot_tsne, tsne_2d
from spp_scl.runs.report.run_files import read_log, read_metrics

DISTANCE_KINDS = ("IID", "TTD", "ITD")
DIAGNOSTICS_FOLDER = "diagnostics"

logger = logging.getLogger(__name__)


@dataclass
class Embeddings:
    ids: list[str]
    labels: np.ndarray  # [N]
    t: np.ndarray | None  # [N, d] aligned text embeddings (None for an image-only head)
    v: np.ndarray | None  # [N, d] aligned image embeddings (None for a text-only head)
    fused: np.ndarray  # [N, f] the classifier input


@torch.no_grad()
def embed_split(model, split, batch_size: int, device="cpu") -> Embeddings:
    """The head's embeddings of a cache split, in consecutive batches of `batch_size` in split order: the
    trainer's evaluation batches, so that even the batch-dependent "cmf-batch" fusion gives its fused vectors."""
    model.eval()
    parts = {"t": [], "v": [], "fused": []}
    ids = []
    for batch in split.batches(batch_size):
        batch = batch.to(device)
        outputs = model(batch.image_maps, batch.first_token, batch.token_states, batch.token_mask)
        for key in parts:  # a head without aligned embeddings (clmlf) has no t and v
            if outputs.get(key) is not None:
                parts[key].append(outputs[key].float().cpu().numpy())
        ids.extend(batch.ids)
    joined = {key: np.concatenate(value) if value else None for key, value in parts.items()}
    return Embeddings(ids, split.labels.copy(), joined["t"], joined["v"], joined["fused"])


def _pair_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] Euclidean distances, in float64 (exact enough to compare with a hand computation)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def same_label_distances(a: np.ndarray, b: np.ndarray | None, labels: np.ndarray) -> dict[int, np.ndarray]:
    """{class: distances of its same-label pairs}. b None: within a (pairs i < j); else across a and b (all i, j)."""
    result = {}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if b is None:
            upper = np.triu_indices(len(rows), k=1)
            result[int(label)] = _pair_distances(a[rows], a[rows])[upper]
        else:
            result[int(label)] = _pair_distances(a[rows], b[rows]).ravel()
    return result


def distance_samples(
    t: np.ndarray | None, v: np.ndarray | None, labels: np.ndarray
) -> dict[str, dict[int, np.ndarray]]:
    """{"IID"|"TTD"|"ITD": {class: distances}} for the kinds the embeddings allow."""
    samples = {}
    if v is not None:
        samples["IID"] = same_label_distances(v, None, labels)
    if t is not None:
        samples["TTD"] = same_label_distances(t, None, labels)
    if t is not None and v is not None:
        samples["ITD"] = same_label_distances(v, t, labels)
    return samples


def different_label_means(t: np.ndarray | None, v: np.ndarray | None, labels: np.ndarray) -> dict[str, float | None]:
    """The same three kinds over pairs with different labels: the reference that says whether "same-label
    distance" is small (classes apart) or merely equal to any distance."""
    other = labels[:, None] != labels[None, :]
    means = {}
    for kind, (a, b) in (("IID", (v, v)), ("TTD", (t, t)), ("ITD", (v, t))):
        if a is not None and b is not None:
            means[kind] = float(_pair_distances(a, b)[other].mean()) if other.any() else None
    return means


def summarise(
    samples: dict[str, dict[int, np.ndarray]],
    class_names: list[str],
    different_label: dict[str, float | None] | None = None,
) -> dict:
    """{kind: {"overall": mean, "per_class": {name: mean or None}, "pairs": count, "different_label": mean}}."""
    summary = {}
    for kind, by_class in samples.items():
        pooled = np.concatenate(list(by_class.values())) if by_class else np.zeros(0)
        summary[kind] = {
            "overall": float(pooled.mean()) if len(pooled) else None,
            "per_class": {class_names[label]: float(d.mean()) if len(d) else None for label, d in by_class.items()},
            "pairs": int(len(pooled)),
            "different_label": (different_label or {}).get(kind),
        }
    return summary


def _unit(x: np.ndarray | None) -> np.ndarray | None:
    return None if x is None else x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def modality_distances(t: np.ndarray | None, v: np.ndarray | None, labels: np.ndarray, class_names: list[str]) -> dict:
    """{"raw": summary, "normalised": summary}: IID, TTD, ITD per class and overall (and over different labels)."""
    return {
        space: summarise(distance_samples(a, b, labels), class_names, different_label_means(a, b, labels))
        for space, (a, b) in (("raw", (t, v)), ("normalised", (_unit(t), _unit(v))))
    }


# ---------------------------------------------------------------------------------------------------- pictures


def run_diagnostics(
    run_dir: str | Path, splits: tuple[str, ...] = ("dev", "test"), tsne: bool = True, device="cpu", log=None
) -> dict:
    """Compute the distances and draw the pictures of a run into <run>/diagnostics/; returns what
    diagnostics.json holds (distances per split and state, the picture paths relative to the run folder)."""
    log = log or logger.info
    run = RunFolder(run_dir)
    folder = run.path / DIAGNOSTICS_FOLDER
    folder.mkdir(exist_ok=True)
    present = [split for split in splits if split in run.cache_splits()]
    if not present:
        raise ValueError(f"the cache {run.cache} has none of the splits {list(splits)}")
    heads = {"untrained": run.untrained_head(device), "trained": run.trained_head(device)}
    embeddings = {}
    for split in present:
        cached = run.open_split(split)
        try:
            for state, model in heads.items():
                embeddings[split, state] = embed_split(model, cached, run.config.batch_size, device)
        finally:
            cached.close()
    result = {
        "splits": present,
        "distances": {split: {} for split in present},
        "pictures": {},
        "definitions": "IID/TTD: mean ||a_i - a_j|| over distinct same-label pairs of image (v) / text (t) "
        "embeddings; ITD: mean ||v_i - t_j|| over all same-label (i, j), i = j included; "
        "overall = pooled over all same-label pairs",
    }
    for (split, state), emb in embeddings.items():
        result["distances"][split][state] = modality_distances(emb.t, emb.v, emb.labels, run.class_names)
    log(f"distances computed on {', '.join(present)}")

    pictures = result["pictures"]
    first = present[0]
    for space, transform in (("raw", lambda x: x), ("normalised", _unit)):
        panels = [
            (
                f"{first}, {state} head",
                distance_samples(
                    transform(embeddings[first, state].t),
                    transform(embeddings[first, state].v),
                    embeddings[first, state].labels,
                ),
            )
            for state in heads
        ]
        if all(panel[1] for panel in panels):
            name = f"distance_distributions_{space}.png"
            plot_distance_distributions(panels, folder / name, "raw" if space == "raw" else "L2-normalised")
            pictures[f"distances_{space}"] = f"{DIAGNOSTICS_FOLDER}/{name}"
    if tsne:
        panels = []
        for split in present:
            for state in heads:
                emb = embeddings[split, state]
                panels.append((f"{split}, {state} head", tsne_2d(emb.fused, run.config.seed), emb.labels))
        plot_tsne(panels, run.class_names, folder / "tsne_fused.png")
        pictures["tsne"] = f"{DIAGNOSTICS_FOLDER}/tsne_fused.png"
        log("t-SNE drawn")
    metrics = read_metrics(run.path / "metrics.json", run.class_names)  # checked: one line when not train's
    if metrics is not None:
        matrices = [
            (
                f"{split} (selected epoch {metrics.get('selected_epoch')})",
                np.asarray(metrics[split]["confusion_matrix"]),
            )
            for split in ("dev", "test")
            if split in metrics
        ]
        if matrices:
            plot_confusion(matrices, run.class_names, folder / "confusion.png")
            pictures["confusion"] = f"{DIAGNOSTICS_FOLDER}/confusion.png"
    lines = read_log(run.path / "log.jsonl")
    if lines:
        selected = metrics.get("selected_epoch") if metrics is not None else None
        plot_curves(lines, selected, run.config.selection_metric, folder / "curves.png", theta=run.config.theta)
        pictures["curves"] = f"{DIAGNOSTICS_FOLDER}/curves.png"
    (folder / "diagnostics.json").write_text(json.dumps(result, indent=1))
    return result
