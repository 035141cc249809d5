"""Run the frozen encoders once over a dataset and write the HDF5 feature cache that training reads.

python extract/run.py --data ../shared/data/mvsa-single --dataset mvsa-single
accelerate launch extract/run.py ...   # several GPUs: the records are split between processes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script, Python puts extract/ first on the path; the project root is what the imports need.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from extract.pipeline import CacheMismatch, ExtractConfig, run  # noqa: E402
from extract.records import DATASET_CLASSES, BadInput  # noqa: E402


def _int_list(value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def parse_args(argv=None) -> ExtractConfig:
    defaults = ExtractConfig(data="")
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Defaults reproduce the paper: BERT-base layers 9-12 ([CLS] and token states), 202 tokens, "
        "ResNet-50 maps (2048 x 7 x 7) after resize 256 / centre crop 224, stored as float16.",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        required=True,
        help="a folder in the CLMLF split format (train.json, dev.json, test.json; any may be absent) "
        "or a .jsonl / .csv file with image, text, label, split (and optional id) per row",
    )
    data.add_argument(
        "--dataset",
        help=f"{', '.join(sorted(DATASET_CLASSES))}: fixes the class names (required for a "
        "split folder; for a file, it also fixes them); another name for a file just "
        "names the dataset",
    )
    data.add_argument(
        "--images",
        help="image folder: <id>.jpg for a split folder (default DATA/images); "
        "the root of the image paths of a file (default the file's folder)",
    )
    data.add_argument(
        "--classes",
        type=lambda v: [c.strip() for c in v.split(",")],
        help="class names, comma-separated, for a JSONL/CSV file (default: the sorted label names, "
        "or 0..max for integer labels)",
    )
    data.add_argument(
        "--allow-non-english",
        action="store_true",
        help="keep texts whose letters are mostly non-Latin script (skipped by default)",
    )
    enc = parser.add_argument_group("encoders")
    enc.add_argument(
        "--text-encoder",
        default=defaults.text_encoder,
        help="transformers model id or local folder; any model that returns per-layer hidden states",
    )
    enc.add_argument(
        "--text-layers",
        type=_int_list,
        default=defaults.text_layers,
        help="layers to store, 1-based (0 = embeddings), negative from the end; default -4,-3,-2,-1 "
        "(BERT-base 9,10,11,12)",
    )
    enc.add_argument("--max-length", type=int, default=defaults.max_length, help="truncate texts to this many tokens")
    enc.add_argument(
        "--image-encoder",
        default=defaults.image_encoder,
        help="transformers vision model id or folder (CNN map, or ViT patch tokens as a grid), or a "
        "plugin path/to/file.py:function or package.module:function returning (module, preprocess)",
    )
    enc.add_argument("--image-resize", type=int, help="shorter side before the crop (default: from the encoder)")
    enc.add_argument("--image-crop", type=int, help="centre-crop side (default: from the encoder)")
    out = parser.add_argument_group("cache")
    out.add_argument("--out", help="cache file (default cache/files/<dataset>__<text>__<image>.h5)")
    out.add_argument("--dtype", choices=["float16", "float32"], default=defaults.dtype, help="storage type")
    out.add_argument(
        "--force",
        action="store_true",
        help="rebuild when the existing cache or unfinished extraction has other settings (else an error)",
    )
    out.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first bad record with an error naming it (default: skip and report it)",
    )
    run_group = parser.add_argument_group("speed (does not change the features beyond float rounding)")
    run_group.add_argument("--text-batch-size", type=int, default=defaults.text_batch_size)
    run_group.add_argument("--image-batch-size", type=int, default=defaults.image_batch_size)
    run_group.add_argument(
        "--shard-size", type=int, default=defaults.shard_size, help="records per resumable unit of work"
    )
    run_group.add_argument("--workers", type=int, default=defaults.workers, help="image decoding threads")
    run_group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.text_layers:
        parser.error("--text-layers names no layer")
    for name in ("text_batch_size", "image_batch_size", "shard_size", "max_length"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return ExtractConfig(**vars(args))


def main(argv=None) -> int:
    config = parse_args(argv)
    try:
        summary = run(config)
    except (BadInput, CacheMismatch, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(summary.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
