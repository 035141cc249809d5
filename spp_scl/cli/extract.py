"""Run the frozen encoders once over a dataset and write the HDF5 feature cache that training reads.

    spp-scl extract --data data/mvsa-single --dataset mvsa-single        # a CLMLF split folder, the paper's encoders
    spp-scl extract --data posts.csv --split 0.8,0.1,0.1                  # a CSV / JSONL file, splits drawn
    spp-scl extract --data hf:coderchen01/MMSD2.0:mmsd-v2 --dataset mmsd2 # a Hugging Face dataset (or a saved folder)
    spp-scl extract --data posts.csv --text-encoder roberta-base          # any transformers encoder
    spp-scl extract --data posts.csv --image-encoder timm:resnet50.a1_in1k  # a timm backbone by name
    spp-scl extract --data posts.csv --text-encoder openai/clip-vit-base-patch32 --image-encoder openai/clip-vit-base-patch32
    spp-scl extract --data posts.csv --text-encoder Qwen/Qwen2.5-0.5B     # a decoder: its last token sums up
    spp-scl extract --data posts.csv --image-encoder my_encoder.py:build  # a plugin module of your own
    python extract/run.py ...                              # the same command
    accelerate launch extract/run.py ...                   # several GPUs: the records are split between processes

Defaults reproduce the paper: BERT-base layers 9-12 ([CLS] and token states), 202 tokens, ResNet-50 maps
(2048 x 7 x 7) after resize 256 / centre crop 224, stored as float16. A stopped run resumes where it stopped.
Encoders: docs/encoders/; data forms and datasets: docs/datasets/.
"""

from __future__ import annotations

import argparse

from spp_scl.core.errors import InputError
from spp_scl.core.options import add_dataclass_options, dataclass_values
from spp_scl.extract.config import EXTRACT_GROUPS, ExtractConfig

HELP = "run the frozen encoders once and write the HDF5 feature cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_options(parser, ExtractConfig, groups=EXTRACT_GROUPS)


def run(args: argparse.Namespace) -> int:
    try:
        config = ExtractConfig(**dataclass_values(args, ExtractConfig))
    except InputError:
        raise
    except ValueError as error:  # a bad option value: argparse's message and status
        args.parser.error(str(error))
    from spp_scl.core.extras import require

    require("transformers")
    PartialState = require("accelerate").PartialState

    from spp_scl.extract.pipeline import run as extract

    summary = extract(config)
    if PartialState().is_main_process:
        print(summary.text())
    return 0
