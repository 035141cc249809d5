"""Extraction throughput against the bare encoder forward, and cache bytes against the float16 states.

The paper's architectures (BERT-base, ResNet-50) with random weights (timing does not depend on the weights),
on the first N records of a real split folder (default ../shared/data/mvsa-single), at the same batch sizes
(--text-encoder / --image-encoder: model folders used instead of the paper's architectures, e.g. the tiny
ones of spp_scl.extract.demo for a smoke test):
- bare: tokenised texts (length-sorted batches, as the pipeline does) and preprocessed pixel tensors made
  beforehand, only the two models' forward passes timed;
- pipeline: spp_scl.extract.pipeline.run end to end (decoding, preprocessing, tokenising, writing shards, the HDF5).

    .venv/bin/python -m bench.extract_throughput [--records 192] [--data ../shared/data/mvsa-single]
        [--text-encoder FOLDER] [--image-encoder FOLDER] [--device cuda] [--json FILE]

The bare forward runs on --device (default: a GPU when there is one, as the pipeline's does).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from spp_scl.extract.image_encoder import ImageEncoder
from spp_scl.extract.images import load_pixels
from spp_scl.extract.pipeline import ExtractConfig, run
from spp_scl.extract.text_encoder import TextEncoder


def build_models(folder: Path, vocab: Path | None, text: bool = True, image: bool = True) -> tuple[Path, Path]:
    """Folders of a random BERT-base and a random ResNet-50 (only those asked for are written)."""
    from transformers import BertConfig, BertModel, ResNetConfig, ResNetModel

    from spp_scl.extract.demo import IMAGENET_MEAN, IMAGENET_STD, write_wordpiece_tokenizer

    text_dir, image_dir = folder / "bert-base-random", folder / "resnet-50-random"
    torch.manual_seed(0)
    if text:
        write_wordpiece_tokenizer(text_dir, "BertTokenizer")
        if vocab is not None:  # bert-base-uncased's own vocabulary, so that texts split into realistic token counts
            shutil.copy(vocab, text_dir / "vocab.txt")
        vocab_size = len((text_dir / "vocab.txt").read_text().splitlines())
        BertModel(BertConfig(vocab_size=vocab_size)).save_pretrained(text_dir)
    if image:
        ResNetModel(ResNetConfig()).save_pretrained(image_dir)  # the default config is ResNet-50
        (image_dir / "preprocessor_config.json").write_text(
            json.dumps(
                {
                    "crop_pct": 0.875,
                    "size": {"shortest_edge": 224},
                    "image_mean": IMAGENET_MEAN,
                    "image_std": IMAGENET_STD,
                }
            )
        )
    return text_dir, image_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/mvsa-single")
    parser.add_argument("--records", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--vocab",
        default=str(Path.home() / ".cache/real-encoders/all-MiniLM-L6-v2/vocab.txt"),
        help="a bert-base-uncased vocab.txt (MiniLM-L6 uses it); the demo vocabulary if absent",
    )
    parser.add_argument("--text-encoder", help="a BERT model folder timed instead of a random BERT-base")
    parser.add_argument("--image-encoder", help="a ResNet model folder timed instead of a random ResNet-50")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        vocab = Path(args.vocab) if Path(args.vocab).is_file() else None
        built_text, built_image = build_models(work, vocab, not args.text_encoder, not args.image_encoder)
        text_dir = Path(args.text_encoder) if args.text_encoder else built_text
        image_dir = Path(args.image_encoder) if args.image_encoder else built_image
        records = json.loads((Path(args.data) / "train.json").read_text())[: args.records]
        (work / "data").mkdir()
        (work / "data" / "train.json").write_text(json.dumps(records))
        images = Path(args.data) / "images"

        text = TextEncoder(str(text_dir), [-4, -3, -2, -1], 202, device=args.device)
        image = ImageEncoder(str(image_dir), device=args.device)
        texts = [r["text"] for r in records]
        lengths = text.token_lengths(texts)
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        pixels = [load_pixels(images / f"{r['id']}.jpg", image.preprocess) for r in records]
        for _ in range(2):  # warm-up
            text.encode(texts[:4])
            image(torch.stack(pixels[:4]))

        def bare_pass() -> tuple[float, float]:
            start = time.perf_counter()
            for i in range(0, len(order), args.batch_size):
                text.encode([texts[j] for j in order[i : i + args.batch_size]])  # features come back to the CPU
            middle = time.perf_counter()
            for i in range(0, len(pixels), args.batch_size):
                image(torch.stack(pixels[i : i + args.batch_size]))
            return middle - start, time.perf_counter() - middle

        # The best of two passes: the first also pays for one-off kernel selection per new shape.
        bare_text, bare_image = min((bare_pass() for _ in range(2)), key=sum)
        bare = bare_text + bare_image

        config = ExtractConfig(
            data=str(work / "data"),
            dataset="mvsa-single",
            images=str(images),
            out=str(work / "cache.h5"),
            text_encoder=str(text_dir),
            image_encoder=str(image_dir),
            text_batch_size=args.batch_size,
            image_batch_size=args.batch_size,
            progress=False,
            allow_non_english=True,
        )
        start = time.perf_counter()
        summary = run(config, log=lambda *_: None)
        pipeline = time.perf_counter() - start
        kept = sum(summary.records.values())
        from spp_scl.cache.reader import cache_summary

        sizes = cache_summary(work / "cache.h5")
        print(
            f"records: {kept} of {len(records)}; batch size {args.batch_size}; torch threads {torch.get_num_threads()}"
        )
        print(
            f"bare forward: text {bare_text:.1f} s + image {bare_image:.1f} s = {bare:.1f} s "
            f"({kept / bare:.2f} records/s)"
        )
        print(
            f"pipeline (spp_scl.extract.pipeline.run, loading and hashing the encoders included): {pipeline:.1f} s "
            f"({kept / pipeline:.2f} records/s)"
        )
        print(f"throughput ratio pipeline / bare: {bare / pipeline:.1%}")
        print(
            f"cache: {sizes['bytes_per_record'] / 1024:.1f} KiB per record; {sizes['overhead']:.4f} x the float16 "
            f"states (image map {sizes['splits']['train']['image_map']}, "
            f"{sizes['splits']['train']['tokens']['mean']:.1f} tokens per text)"
        )
        if args.json:
            figures = {
                "records": kept,
                "batch_size": args.batch_size,
                "device": args.device,
                "bare_text_seconds": round(bare_text, 3),
                "bare_image_seconds": round(bare_image, 3),
                "pipeline_seconds": round(pipeline, 3),
                "bare_records_per_second": round(kept / bare, 2),
                "pipeline_records_per_second": round(kept / pipeline, 2),
                "pipeline_over_bare": round(bare / pipeline, 4),
                "kib_per_record": round(sizes["bytes_per_record"] / 1024, 1),
            }
            Path(args.json).write_text(json.dumps(figures, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
