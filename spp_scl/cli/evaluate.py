"""A trained run's metrics on labelled image-text pairs: accuracy, weighted and macro F1, per class, confusion matrix.

    spp-scl evaluate RUN_DIR --pairs labelled.csv
    spp-scl evaluate RUN_DIR --pairs posts.jsonl --out metrics.json
    spp-scl evaluate RUN_DIR --pairs dev.json --images data/images     # a CLMLF split file (emotion_label)

The pair files are those predict reads (.csv, .jsonl, or a .json list: text and image or id per row), with a
`label` column (a class name of the run, or its index; `emotion_label` in a CLMLF .json list). Pairs predict
cannot serve (a missing or undecodable image, an empty text) and pairs without a known label are left out of the
metrics, counted, and listed (five examples each); the metrics say how many pairs they cover (`records`).
Exit status 0: metrics written (also when some pairs were left out: the counts say so); 3: a file without a
label column, or no pair that could be scored; others below.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

HELP = "metrics of a trained run on labelled pairs (accuracy, F1, per class, confusion matrix)"
logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `spp-scl train`")
    parser.add_argument("--pairs", required=True, help="a .csv, .jsonl or .json file of pairs with a label column")
    parser.add_argument("--images", help="the folder image paths and <id>.jpg are relative to")
    parser.add_argument("--out", help="also write the metrics to this JSON file")
    parser.add_argument("--text-encoder", help="default: where the run's config.json says it was loaded from")
    parser.add_argument("--image-encoder", help="default: the transformers model the run's config.json records")
    parser.add_argument("--trust-plugin", action="store_true", help="run the plugin image encoder of --image-encoder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per encoder forward (speed only)")
    parser.add_argument("--workers", type=int, default=2, help="image decoding threads")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        args.parser.error("--batch-size must be positive")
    from spp_scl.core.extras import require

    require("transformers")  # the run's encoders
    import contextlib

    from spp_scl.api import evaluate

    options = {
        "text_encoder": args.text_encoder,
        "image_encoder": args.image_encoder,
        "device": args.device,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "trust_plugin": args.trust_plugin,
    }
    with contextlib.redirect_stdout(sys.stderr):  # whatever loading an encoder prints: not among the results
        metrics = evaluate(args.run_dir, args.pairs, images=args.images, **options)
    for kind, what in (("not_predicted", "could not be predicted"), ("unlabelled", "have no known label")):
        if metrics[kind]:
            examples = "; ".join(f"{item['id']}: {item['error']}" for item in metrics[f"{kind}_examples"][:3])
            logger.warning(f"{metrics[kind]} of {metrics['pairs']} pairs {what}, left out ({examples})")
    print(summary(metrics))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(metrics, handle, indent=1, ensure_ascii=False)
            handle.write("\n")
        logger.info(f"metrics written to {args.out}")
    return 0


def summary(metrics: dict) -> str:
    """The metrics as a few lines of text: totals, per class, the confusion matrix (rows true, columns predicted)."""
    names = list(metrics["per_class"])
    width = max(len(name) for name in names + ["class"])
    lines = [
        f"{metrics['records']} of {metrics['pairs']} pairs scored ({metrics['not_predicted']} not predicted, "
        f"{metrics['unlabelled']} without a known label)",
        f"accuracy {metrics['accuracy']:.4f}  weighted F1 {metrics['f1_weighted']:.4f}  "
        f"macro F1 {metrics['f1_macro']:.4f}",
        f"{'class':<{width}}  precision  recall      f1  support",
    ]
    for name, row in metrics["per_class"].items():
        lines.append(
            f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  {row['support']:7d}"
        )
    lines.append("confusion matrix (rows: true class, columns: predicted, in the order above):")
    lines.extend("  " + " ".join(f"{count:5d}" for count in row) for row in metrics["confusion_matrix"])
    return "\n".join(lines)
