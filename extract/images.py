"""Image decoding and the paper's preprocessing (resize the shorter side, centre-crop, normalise), written once.

The parameters come from the image encoder (`extract/image_encoder.py`); the steps follow torchvision's
Resize(int) + CenterCrop + Normalize on a PIL image, which is what the SPP-SCL code used, done here with
Pillow and NumPy so that no torchvision is needed.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class Preprocess:
    resize: int  # the shorter side after resizing
    crop: int  # the side of the centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def as_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


class ImageProblem(Exception):
    """An image that cannot be used; the message is the reason written to the skip report."""


def load_rgb(path: Path) -> Image.Image:
    """Decode an image fully and return it as RGB; transparency is laid over white."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode now, so that a truncated file fails here rather than later
                if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                    rgba = image.convert("RGBA")
                    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    return Image.alpha_composite(white, rgba).convert("RGB")
                if image.mode in ("I;16", "I;16B", "I", "F"):  # 16/32-bit grey: scale to 8 bits, not clip
                    values = np.asarray(image, dtype=np.float64)
                    span = max(values.max() - values.min(), 1e-12)
                    grey = ((values - values.min()) / span * 255).round().astype(np.uint8)
                    return Image.fromarray(grey, "L").convert("RGB")
                return image.convert("RGB")
    except FileNotFoundError:
        raise ImageProblem(f"image not found: {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageProblem(f"image too large to decode safely: {error}") from None
    except Image.UnidentifiedImageError:
        raise ImageProblem(f"not a decodable image: {path}") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise ImageProblem(f"image could not be decoded ({error}): {path}") from None


def to_pixels(image: Image.Image, preprocess: Preprocess) -> torch.Tensor:
    """[3, crop, crop] float32: shorter side to `resize` (bilinear), centre crop, normalise."""
    width, height = image.size
    if width <= height:
        size = (preprocess.resize, int(preprocess.resize * height / width))
    else:
        size = (int(preprocess.resize * width / height), preprocess.resize)
    if size != (width, height):
        image = image.resize(size, Image.BILINEAR)
    width, height = image.size
    crop = preprocess.crop
    if crop > min(width, height):  # as torchvision: pad with zeros where the crop exceeds the image
        padded = Image.new("RGB", (max(width, crop), max(height, crop)))
        padded.paste(image, ((padded.width - width) // 2, (padded.height - height) // 2))
        image, (width, height) = padded, padded.size
    top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(preprocess.mean, dtype=np.float32)) / np.asarray(preprocess.std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def load_pixels(path: Path, preprocess: Preprocess) -> torch.Tensor:
    return to_pixels(load_rgb(path), preprocess)
