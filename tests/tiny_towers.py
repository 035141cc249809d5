"""Tiny random two-tower (CLIP, SigLIP), decoder (GPT-2) and timm models saved as model folders, for the encoder tests.

Each loads through the code path its hub id takes: transformers' from_pretrained(folder), timm's create_model with
a local-dir: or hf-hub: name (the hub form reading a Hugging Face cache folder laid out as a download leaves it).
The tokenizers are byte-level BPE with no merges: every byte is a token, which is all a test of positions needs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from spp_scl.extract.demo import IMAGENET_MEAN, IMAGENET_STD


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes (its byte-level BPE alphabet)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for _, code in sorted(zip(printable, codes))]


def write_clip_tokenizer(folder: Path) -> int:
    """CLIP's tokenizer files (lower-cased, </w> word ends); returns the vocabulary size."""
    symbols = _byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "pad_token": "<|endoftext|>"})
    )
    return len(vocab)


def write_byte_tokenizer(folder: Path, padding_side: str, eos: str = "<|endoftext|>", pad: bool = False) -> int:
    """A GPT-2 style tokenizer; without `pad`, it has no padding token (as GPT-2 and Llama ship)."""
    vocab = _byte_symbols() + [eos]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    config = {"tokenizer_class": "GPT2Tokenizer", "eos_token": eos, "bos_token": eos, "padding_side": padding_side}
    if pad:
        config["pad_token"] = eos
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return len(vocab)


def _tower(hidden: int, layers: int, positions: int | None = None) -> dict:
    tower = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=2)
    return tower | ({"max_position_embeddings": positions} if positions else {})


def make_tiny_clip(folder: Path, kind: str = "clip", seed: int = 0) -> Path:
    """A random CLIP or SigLIP (3 text layers of width 16; a 32-pixel vision tower of 8-pixel patches)."""
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    folder.mkdir(parents=True, exist_ok=True)
    if kind == "clip":
        vocab = write_clip_tokenizer(folder)
        text = _tower(16, 3, 77) | {"vocab_size": vocab, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1}
        config = CLIPConfig(
            text_config=text, vision_config=_tower(16, 2) | {"image_size": 32, "patch_size": 8}, projection_dim=8
        )
        model_class = CLIPModel
    else:
        vocab = write_byte_tokenizer(folder, "right", eos="</s>", pad=True)
        text = _tower(16, 3, 64) | {"vocab_size": vocab}
        config = SiglipConfig(text_config=text, vision_config=_tower(16, 2) | {"image_size": 32, "patch_size": 8})
        model_class = SiglipModel
    torch.manual_seed(seed)
    model_class(config).eval().save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "CLIPImageProcessor",
                "size": {"shortest_edge": 32},
                "crop_size": {"height": 32, "width": 32},
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
            }
        )
    )
    return folder


def make_tiny_decoder(folder: Path, padding_side: str = "left", seed: int = 0) -> Path:
    """A random GPT-2 (3 layers of width 16) with a tokenizer that has no padding token. GPT-2's learned absolute
    positions make left padding visible unless position ids are given (a rotary model would hide it: a shift of
    every position leaves its attention unchanged)."""
    from transformers import GPT2Config, GPT2Model

    folder.mkdir(parents=True, exist_ok=True)
    vocab = write_byte_tokenizer(folder, padding_side)
    config = GPT2Config(
        vocab_size=vocab,
        n_embd=16,
        n_layer=3,
        n_head=2,
        n_positions=128,
        bos_token_id=vocab - 1,
        eos_token_id=vocab - 1,
    )
    torch.manual_seed(seed)
    GPT2Model(config).eval().save_pretrained(folder)
    return folder


def make_tiny_timm(folder: Path, architecture: str, seed: int = 0) -> Path:
    """A random timm model saved as timm saves one for the hub (config.json, model.safetensors), small by model_args:
    a ResNet of one block per stage, or a one-block ViT on 32-pixel images of 8-pixel patches."""
    import timm
    from timm.models import save_for_hf

    model_args, side = {
        "resnet18": ({"layers": [1, 1, 1, 1]}, 64),
        "vit_tiny_patch16_224": ({"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 24, "num_heads": 2}, 32),
    }[architecture]
    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=0, **model_args).eval()
    model.pretrained_cfg = {
        **model.pretrained_cfg,
        "input_size": (3, side, side),
        "crop_pct": 0.8,
        "interpolation": "bicubic",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
    }
    save_for_hf(model, folder, model_args=model_args, safe_serialization=True)
    return folder


def as_hub_download(folder: Path, hub_cache: Path, repo_id: str) -> None:
    """Lay `folder` out in a Hugging Face cache (hub_cache) as a download of `repo_id` would."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for file in folder.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
