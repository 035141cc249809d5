"""predict on this machine, encoders included: load time, latency of one pair alone, throughput in batches,
and agreement with the run's own dev predictions (the trainer's, from the cache).

Pairs are the first N records of a CLMLF split file (default ../shared/data/mvsa-single/dev.json), read from
their raw images and texts. Latency: each pair predicted alone (decode, preprocess, tokenise, both encoders,
head), after one warm-up call; throughput: all N pairs streamed at each batch size.

    .venv/bin/python -m bench.predict_speed RUN_DIR [--records 256] [--latency-pairs 40] [--batch-sizes 1,16,32]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spp_scl.runs.predict.predictor import Predictor


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--split-file", default="../shared/data/mvsa-single/dev.json")
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--latency-pairs", type=int, default=40)
    parser.add_argument("--batch-sizes", default="1,16,32")
    parser.add_argument("--text-encoder")
    parser.add_argument("--image-encoder")
    args = parser.parse_args(argv)

    split_file = Path(args.split_file)
    records = json.loads(split_file.read_text())[: args.records]
    pairs = [(r["id"], split_file.parent / "images" / f"{r['id']}.jpg", r["text"]) for r in records]
    started = time.perf_counter()
    predictor = Predictor(args.run, args.text_encoder, args.image_encoder, batch_size=1)
    load_seconds = time.perf_counter() - started
    report = {"cpu_threads": torch.get_num_threads(), "load_seconds": round(load_seconds, 2), "pairs": len(pairs)}

    list(predictor.predict(pairs[:1]))  # warm-up: first calls allocate and pick kernels
    latencies = []
    for pair in pairs[: args.latency_pairs]:
        begin = time.perf_counter()
        list(predictor.predict([pair]))
        latencies.append(time.perf_counter() - begin)
    report["latency_ms"] = {
        "median": round(1000 * statistics.median(latencies), 1),
        "p90": round(1000 * float(np.percentile(latencies, 90)), 1),
        "mean": round(1000 * statistics.mean(latencies), 1),
        "pairs": len(latencies),
    }

    report["throughput_pairs_per_s"] = {}
    results = None
    for size in (int(s) for s in args.batch_sizes.split(",")):
        predictor.batch_size = size
        begin = time.perf_counter()
        results = list(predictor.predict(pairs))
        report["throughput_pairs_per_s"][size] = round(len(pairs) / (time.perf_counter() - begin), 2)

    with (Path(args.run) / "predictions.csv").open() as handle:
        saved = {row["id"]: row for row in csv.DictReader(handle) if row["split"] == "dev"}
    common = [r for r in results if r.error is None and r.id in saved]
    if common:
        names = predictor.class_names
        ours = np.array([[r.probabilities[n] for n in names] for r in common])
        theirs = np.array([[float(saved[r.id][f"p_{n}"]) for n in names] for r in common])
        report["agreement_with_trainer_dev_predictions"] = {
            "pairs": len(common),
            "same_class": float(np.mean([r.prediction == saved[r.id]["prediction"] for r in common])),
            "max_abs_probability_difference": float(np.abs(ours - theirs).max()),
        }
    report["errors"] = sum(r.error is not None for r in results)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
