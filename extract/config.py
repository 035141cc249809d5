"""What one extraction is asked to do: the options of `spp-scl extract` (and `python extract/run.py`).

The command line is generated from these fields (their types, defaults and help), so this dataclass is the one
place an extraction option is defined. Defaults reproduce the paper: BERT-base layers 9-12 ([CLS] and token
states), 202 tokens, ResNet-50 maps (2048 x 7 x 7) after resize 256 / centre crop 224, stored as float16.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


def option(default: Any = None, help: str = "", group: str = "data", **kwargs: Any) -> Any:
    if "default_factory" in kwargs:
        return field(metadata={"help": help, "group": group}, **kwargs)
    return field(default=default, metadata={"help": help, "group": group}, **kwargs)


@dataclass
class ExtractConfig:
    data: str = field(
        metadata={
            "group": "data",
            "help": "a folder in the CLMLF split format (train.json, dev.json, test.json; any may be absent) or a "
            ".jsonl / .csv file with image, text, label, split (and optional id) per row",
        }
    )
    dataset: str | None = option(
        None,
        "mvsa-single, mvsa-multiple or hfm fixes the class names (required for a split folder; for a file, it also "
        "fixes them); another name for a file just names the dataset",
    )
    images: str | None = option(
        None,
        "image folder: <id>.jpg for a split folder (default DATA/images); the root of the image paths of a file "
        "(default the file's folder)",
    )
    classes: list[str] | None = option(
        None, "class names, comma-separated, for a JSONL/CSV file (default: the sorted label names, or 0..max)"
    )
    allow_non_english: bool = option(False, "keep texts whose letters are mostly non-Latin script (skipped by default)")
    out: str | None = option(None, "cache file (default cache/files/<dataset>__<text>__<image>.h5)", group="cache")
    text_encoder: str = option(
        "bert-base-uncased",
        "transformers model id or local folder; any model that returns per-layer hidden states",
        group="encoders",
    )
    text_layers: list[int] = option(
        help="layers to store, comma-separated, 1-based (0 = embeddings), negative from the end; default -4,-3,-2,-1 "
        "(BERT-base 9,10,11,12)",
        group="encoders",
        default_factory=lambda: [-4, -3, -2, -1],
    )
    max_length: int = option(202, "truncate texts to this many tokens", group="encoders")
    image_encoder: str = option(
        "microsoft/resnet-50",
        "transformers vision model id or folder (CNN map, or ViT patch tokens as a grid), or a plugin "
        "path/to/file.py:function or package.module:function returning (module, preprocess)",
        group="encoders",
    )
    image_resize: int | None = option(
        None, "shorter side before the crop (default: from the encoder)", group="encoders"
    )
    image_crop: int | None = option(None, "centre-crop side (default: from the encoder)", group="encoders")
    dtype: Literal["float16", "float32"] = option("float16", "storage type of the features", group="cache")
    force: bool = option(
        False, "rebuild when the existing cache or unfinished extraction has other settings (else an error)", "cache"
    )
    strict: bool = option(
        False, "stop at the first bad record with an error naming it (default: skip and report it)", "cache"
    )
    text_batch_size: int = option(32, "texts per encoder forward", group="speed")
    image_batch_size: int = option(32, "images per encoder forward", group="speed")
    shard_size: int = option(256, "records per resumable unit of work", group="speed")
    workers: int = option(2, "image decoding threads", group="speed")
    progress: bool = option(True, "show a progress bar", group="speed")

    def __post_init__(self) -> None:
        if not self.text_layers:
            raise ValueError("text_layers names no layer")
        for name in ("text_batch_size", "image_batch_size", "shard_size", "max_length", "workers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


EXTRACT_GROUPS = {
    "data": "data",
    "encoders": "encoders",
    "cache": "cache",
    "speed": "speed (does not change the features beyond float rounding)",
}
