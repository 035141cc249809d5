"""How much a batch-attention (cmf-batch) head's dev score depends on which posts share an evaluation batch.

The paper's CMF attends over the other posts of a batch. This scores a trained run's dev split under several
batchings of the same records, each prediction from the same weights:
- consecutive: fixed batches in the split's order (what the trainer and the paper report);
- shuffled: random batches (mean +- std over --permutations orders);
- alone: batch size 1 (the attention can only see the post itself);
- by label: batches of a single true label (an oracle batching no real use can have: it shows how much the
  attention can read the labels of its batch-mates).
A head whose score moves with the batching reads its batch-mates; the batch-independent fusion (cmf-bank) gives
the same number in every row (a check of this script).

    python -m bench.batch_fusion_dependence RUN_DIR [--permutations 10] [--split dev]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from spp_scl.runs.predict.run_folder import RunFolder
from spp_scl.runs.train.checkpoint import load_head
from spp_scl.runs.train.metrics import classification_metrics


@torch.no_grad()
def probabilities_in_batches(model, split, batches: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(split), split.num_classes))
    for indices in batches:
        batch = split.batch(indices)
        logits = model(batch.image_maps, batch.first_token, batch.token_states, batch.token_mask)["logits"]
        out[indices] = torch.softmax(logits.float(), dim=1).numpy()
    return out


def batchings(labels: np.ndarray, batch_size: int, permutations: int, seed: int) -> dict[str, list[list[np.ndarray]]]:
    order = np.arange(len(labels))
    chunk = lambda idx: [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]  # noqa: E731
    rng = np.random.default_rng(seed)
    by_label = [b for label in np.unique(labels) for b in chunk(order[labels == label])]
    return {
        "consecutive": [chunk(order)],
        "shuffled": [chunk(rng.permutation(order)) for _ in range(permutations)],
        "alone": [[np.array([i]) for i in order]],
        "by label (oracle)": [by_label],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--permutations", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run = RunFolder(args.run_dir)
    model, config, _ = load_head(run.path)
    split = run.open_split(args.split, in_memory=True)
    labels = split.labels
    results = {}
    for name, variants in batchings(labels, config.batch_size, args.permutations, args.seed).items():
        scores = []
        for batches in variants:
            predicted = probabilities_in_batches(model, split, batches).argmax(1)
            metrics = classification_metrics(labels, predicted, split.class_names)
            scores.append((metrics["accuracy"], metrics[config.selection_metric]))
        scores = np.array(scores)
        results[name] = {
            "accuracy": [float(scores[:, 0].mean()), float(scores[:, 0].std())],
            config.selection_metric: [float(scores[:, 1].mean()), float(scores[:, 1].std())],
            "batchings": len(variants),
        }
        print(
            f"{name:20s} accuracy {scores[:, 0].mean():.4f} +- {scores[:, 0].std():.4f}  {config.selection_metric} "
            f"{scores[:, 1].mean():.4f} +- {scores[:, 1].std():.4f}  ({len(variants)} batching(s))"
        )
    print(json.dumps({"run": str(run.path), "fusion": config.fusion, "split": args.split, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
