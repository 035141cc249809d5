"""A generated image-text sentiment set and tiny random encoders, built locally.

They serve the built-in demo of `run_all.sh` and the tests: no download, and the encoders load through the
same `from_pretrained(folder)` path that a hub id takes. The data is made so that a label can be learned
from the text alone, from the image alone, or only from both together:
- "text" records: a sentiment word in the text, a neutral image;
- "image" records: a sentiment colour in the image, neutral filler text;
- "both" records: a cue word and a cue shape that each say nothing alone; their combination gives
  positive or negative (an exclusive or), so only fusion can read it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# What every output of the built-in demo says in its title and JSON (`--data-note`), so that its tables, set beside
# the paper's MVSA numbers, are never read as a measurement on MVSA.
DEMO_STAMP = "DEMO: generated data, not MVSA"
CLASS_NAMES = ["positive", "neutral", "negative"]
SENTIMENT_WORDS = {0: ["happy", "great", "love"], 1: ["okay", "plain", "usual"], 2: ["sad", "awful", "hate"]}
SENTIMENT_COLOURS = {0: (230, 160, 30), 1: (128, 128, 128), 2: (30, 60, 200)}
XOR_WORDS = ["alpha", "omega"]
FILLER = (
    "the a of to in on at and this that today we they it is was photo picture street city time "
    "morning evening friend people day night look here there new old just some more"
).split()
# Short posts: HA averages its LSTM outputs over the tokens, so one cue word in 40 fillers is a faint signal
# that a few demo epochs cannot find; real tweets are short too (MVSA-S: about 31 tokens).
FILLER_WORDS = (2, 12)
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def demo_vocabulary() -> list[str]:
    words = sorted(set(FILLER + XOR_WORDS + [w for ws in SENTIMENT_WORDS.values() for w in ws]))
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?", "#", "@"] + letters + words


def write_wordpiece_tokenizer(folder: Path, tokenizer_class: str) -> None:
    """vocab.txt and tokenizer_config.json: the files AutoTokenizer.from_pretrained reads for a WordPiece model."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(demo_vocabulary()) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": tokenizer_class, "do_lower_case": True, "model_max_length": 256})
    )


def make_tiny_text_encoder(folder: str | Path, num_layers: int = 4, hidden: int = 32, seed: int = 0) -> Path:
    """A random BERT (uncased WordPiece tokenizer, `num_layers` layers of width `hidden`) saved as a model folder."""
    import torch
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    write_wordpiece_tokenizer(folder, "BertTokenizer")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(demo_vocabulary()),
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
    )
    model = BertModel(config).eval()
    # Word identity must outweigh position after the embedding LayerNorm, or random layers blur which word
    # sits where and the demo's cue words are faint (BERT's own init gives words and positions equal scale).
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.normal_(0.0, 1.0)
    model.save_pretrained(folder)
    return folder


def make_tiny_image_encoder(folder: str | Path, size: int = 64, seed: int = 0) -> Path:
    """A random two-stage ResNet saved as a model folder, with a preprocessor config in the form of
    microsoft/resnet-50's (shortest edge and crop_pct: resize to size/0.875, centre-crop `size`)."""
    import torch
    from transformers import ResNetConfig, ResNetModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[16, 24], depths=[1, 1], layer_type="basic")
    model = ResNetModel(config).eval()
    # Random BatchNorm running statistics, so that eval-mode maps are not trivially close to the conv output.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "ConvNextImageProcessor",
                "crop_pct": 0.875,
                "size": {"shortest_edge": size},
                "do_resize": True,
                "do_normalize": True,
                "image_mean": IMAGENET_MEAN,
                "image_std": IMAGENET_STD,
                "resample": 2,
            },
            indent=2,
        )
    )
    return folder


def _demo_record(rng: random.Random) -> tuple[str, int, tuple, str | None]:
    """(text, label, image colour, cue shape or None) of one generated post."""
    mode = rng.choice(["text", "image", "both"])
    filler = [rng.choice(FILLER) for _ in range(rng.randint(*FILLER_WORDS))]
    if mode == "text":
        label = rng.randrange(3)
        filler.insert(rng.randrange(len(filler) + 1), rng.choice(SENTIMENT_WORDS[label]))
        return " ".join(filler), label, SENTIMENT_COLOURS[1], None
    if mode == "image":
        label = rng.randrange(3)
        return " ".join(filler), label, SENTIMENT_COLOURS[label], None
    word_bit, shape_bit = rng.randrange(2), rng.randrange(2)
    label = 0 if word_bit == shape_bit else 2
    filler.insert(rng.randrange(len(filler) + 1), XOR_WORDS[word_bit])
    return " ".join(filler), label, SENTIMENT_COLOURS[1], ("square", "disc")[shape_bit]


def _draw_image(rng: random.Random, colour: tuple, shape: str | None):
    from PIL import Image, ImageDraw

    width, height = rng.randint(60, 140), rng.randint(60, 140)
    background = tuple(rng.randint(90, 170) for _ in range(3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for _ in range(6):  # clutter that carries no label
        x, y = rng.randrange(width), rng.randrange(height)
        draw.line(
            (x, y, rng.randrange(width), rng.randrange(height)),
            fill=tuple(rng.randint(0, 255) for _ in range(3)),
            width=2,
        )
    side = min(width, height) // 2
    x0, y0 = (width - side) // 2, (height - side) // 2
    draw.rectangle((x0, y0, x0 + side, y0 + side), fill=colour)
    if shape == "square":
        draw.rectangle((x0 + side // 4, y0 + side // 4, x0 + 3 * side // 4, y0 + 3 * side // 4), fill=(255, 255, 255))
    elif shape == "disc":
        draw.ellipse((x0 + side // 4, y0 + side // 4, x0 + 3 * side // 4, y0 + 3 * side // 4), fill=(0, 0, 0))
    return image


def make_demo_dataset(folder: str | Path, sizes: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write `train.json`, `dev.json`, `test.json` and `images/<id>.jpg` in the CLMLF split format."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    sizes = sizes or {"train": 600, "dev": 150, "test": 150}
    rng = random.Random(seed)
    next_id = 1
    for split, count in sizes.items():
        records = []
        for _ in range(count):
            text, label, colour, shape = _demo_record(rng)
            _draw_image(rng, colour, shape).save(folder / "images" / f"{next_id}.jpg", quality=92)
            records.append({"id": str(next_id), "text": text, "emotion_label": label})
            next_id += 1
        (folder / f"{split}.json").write_text(json.dumps(records, indent=1))
    return folder


def prepare_demo(folder: str | Path, sizes: dict[str, int], log=print) -> Path:
    """The demo set and tiny encoders in `folder` (data/, text-encoder/, image-encoder/), unless already there."""
    folder = Path(folder)
    marker = folder / "data" / "sizes.json"
    if marker.exists() and json.loads(marker.read_text()) == sizes:
        log(f"demo set and encoders already in {folder}")
        return folder
    make_tiny_text_encoder(folder / "text-encoder")
    make_tiny_image_encoder(folder / "image-encoder")
    make_demo_dataset(folder / "data", sizes)
    marker.write_text(json.dumps(sizes))
    log(f"generated {folder}/data ({sizes} posts) and tiny random encoders in {folder}")
    return folder
