"""What one extraction is asked to do: the options of `spp-scl extract` (and `python extract/run.py`).

The command line is generated from these fields (their types, defaults and help), so this dataclass is the one
place an extraction option is defined. Defaults reproduce the paper: BERT-base layers 9-12 ([CLS] and token
states), 202 tokens, ResNet-50 maps (2048 x 7 x 7) after resize 256 / centre crop 224, stored as float16.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from spp_scl.extract.split_assignment import check_shares


def option(default: Any = None, help: str = "", group: str = "data", **kwargs: Any) -> Any:
    if "default_factory" in kwargs:
        return field(metadata={"help": help, "group": group}, **kwargs)
    return field(default=default, metadata={"help": help, "group": group}, **kwargs)


@dataclass
class ExtractConfig:
    data: str = field(
        metadata={
            "group": "data",
            "help": "a folder in the CLMLF split format (train.json, dev.json, test.json; any may be absent: "
            "data/mvsa-single), a .jsonl / .csv file with image, text, label, split (and optional id) per row "
            "(posts.csv), a Hugging Face dataset hf:NAME[:CONFIG] (hf:coderchen01/MMSD2.0:mmsd-v2), or a folder "
            "saved by the datasets library's save_to_disk; its image column holds images or paths",
        }
    )
    dataset: str | None = option(
        None,
        "mvsa-single, mvsa-multiple, hfm or mmsd2 (MMSD2.0) fixes the class names (required for a split folder; for "
        "a file or a datasets dataset, it also fixes them) and later the preset; another name just names the dataset",
    )
    images: str | None = option(
        None,
        "image folder: <id>.jpg for a split folder (default DATA/images); the root of the image paths of a file "
        "(default the file's folder)",
    )
    classes: list[str] | None = option(
        None, "class names, comma-separated, for a JSONL/CSV file (default: the sorted label names, or 0..max)"
    )
    split: list[float] | None = option(
        None,
        "draw the splits of a .jsonl / .csv file that has none: train,dev[,test] shares, e.g. 0.8,0.1,0.1 "
        "(stratified by label, recorded in the cache's fingerprint)",
    )
    split_seed: int = option(0, "seed of the --split draw")
    text_column: str | None = option(None, "a datasets dataset's text column (default: text, sentence, caption...)")
    image_column: str | None = option(None, "its image column, images or paths (default: image, img, image_path...)")
    label_column: str | None = option(None, "its label column (default: label, labels, sentiment...)")
    id_column: str | None = option(None, "its record id column (default: id, image_id...; else split[row])")
    allow_non_english: bool = option(False, "keep texts whose letters are mostly non-Latin script (skipped by default)")
    out: str | None = option(None, "cache file (default cache/files/<dataset>__<text>__<image>.h5)", group="cache")
    text_encoder: str = option(
        "bert-base-uncased",
        "transformers model id or local folder: an encoder (bert-base-uncased, roberta-base, "
        "sentence-transformers/all-mpnet-base-v2), the text tower of a two-tower model (openai/clip-vit-base-patch32, "
        "google/siglip-base-patch16-224) or a decoder (gpt2, Qwen/Qwen2.5-0.5B)",
        group="encoders",
    )
    sentence_token: Literal["auto", "first", "last", "eos", "mean"] = option(
        "auto",
        "each layer's sentence vector (the gate's and the fusion's input): the first token ([CLS]), the last real "
        "token, the first end-of-text token, or the mean of the real tokens; auto: first for encoders, eos for "
        "CLIP and SigLIP towers, last for decoders",
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
        "transformers vision model id or folder (CNN map, ViT patch tokens as a grid: microsoft/resnet-50, "
        "google/vit-base-patch16-224; the vision tower of openai/clip-vit-base-patch32 or a SigLIP), a timm model "
        "timm:NAME (timm:resnet50.a1_in1k, timm:vit_base_patch16_224.augreg_in21k, timm:local-dir:FOLDER), or a "
        "plugin path/to/file.py:function or package.module:function returning (module, preprocess)",
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
    views: int = option(
        0,
        "V stochastic views per record of --view-splits, stored beside the clean features (0 = none: the cache is "
        "exactly as without this option). Cost per record and view measured on MVSA-S (MPNet-base layers 9-12, "
        "EfficientNet-Lite2, 1 thread; a clean record: 0.172 CPU s): text dropout 164 KiB and 0.015 s (41 KiB, "
        "0.009 s with --view-text-layers -1), paraphrase 145 KiB and 0.032 s, RandAugment 122.5 KiB and 0.052 s, "
        "BatchNorm in train mode 122.5 KiB and 0.122 s (docs/cache.md, 'Augmented views')",
        group="views",
    )
    view_splits: list[str] = option(
        help="splits that get views, comma-separated (training reads train only; dev and test are evaluated clean)",
        group="views",
        default_factory=lambda: ["train"],
    )
    view_text_dropout: bool = option(
        True, "text views from the text encoder with its dropout on (train mode, no gradients)", group="views"
    )
    view_paraphrases: str | None = option(
        None,
        "a JSON/JSONL file of one paraphrase per record id (CLMLF's back-translations: [{id, text_translation}]); "
        "text views encode the paraphrase (a record without one keeps its own text); without dropout, one view",
        group="views",
    )
    view_text_layers: list[int] | None = option(
        None,
        "text layers stored in the views, a subset of --text-layers (e.g. -1 for the token-level heads, which read "
        "one layer: a quarter of the bytes of 4 layers); none = all cached layers",
        group="views",
    )
    view_image_augment: bool = option(
        True,
        "image views from CLMLF's augmentation: RandAugment (--view-randaugment-ops operations at "
        "--view-randaugment-magnitude of 30), resize and crop, horizontal flip with --view-flip probability",
        group="views",
    )
    view_randaugment_ops: int = option(2, "RandAugment operations per image view (CLMLF: 2)", group="views")
    view_randaugment_magnitude: int = option(14, "RandAugment magnitude, 0..30 (CLMLF: 14)", group="views")
    view_flip: float = option(0.5, "probability of a horizontal flip of an image view (CLMLF: 0.5)", group="views")
    view_image_batchnorm: bool = option(
        False,
        "image views with the encoder's BatchNorm in train mode over random batches of the shard (the authors' "
        "regime; with --view-image-augment, over the augmented images); the views then depend on --shard-size",
        group="views",
    )
    view_batchnorm_batch: int = option(64, "records per batch for --view-image-batchnorm", group="views")
    view_seed: int = option(0, "seed of every view's random stream", group="views")
    text_batch_size: int = option(32, "texts per encoder forward", group="speed")
    image_batch_size: int = option(32, "images per encoder forward", group="speed")
    shard_size: int = option(256, "records per resumable unit of work", group="speed")
    workers: int = option(2, "image decoding threads", group="speed")
    progress: bool = option(True, "show a progress bar", group="speed")

    def __post_init__(self) -> None:
        if not self.text_layers:
            raise ValueError("text_layers names no layer")
        if self.split is not None:
            check_shares(self.split)
        for name in ("text_batch_size", "image_batch_size", "shard_size", "max_length", "workers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.views < 0:
            raise ValueError(f"views must be 0 or more, got {self.views}")
        unknown = [split for split in self.view_splits if split not in ("train", "dev", "test")]
        if unknown or not self.view_splits:
            raise ValueError(f"view_splits must name train, dev or test, got {self.view_splits}")
        if self.view_batchnorm_batch < 2:
            raise ValueError(f"view_batchnorm_batch must be at least 2, got {self.view_batchnorm_batch}")
        if not 0 <= self.view_randaugment_magnitude <= 30 or self.view_randaugment_ops < 0:
            raise ValueError("view_randaugment_magnitude must be in 0..30 and view_randaugment_ops 0 or more")
        if not 0.0 <= self.view_flip <= 1.0:
            raise ValueError(f"view_flip must be a probability, got {self.view_flip}")


EXTRACT_GROUPS = {
    "data": "data",
    "encoders": "encoders",
    "cache": "cache",
    "views": "augmented views (stored beside the clean features; see docs/cache.md, 'Augmented views')",
    "speed": "speed (does not change the features beyond float rounding)",
}
