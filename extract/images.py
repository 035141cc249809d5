"""Image decoding and the paper's preprocessing (resize the shorter side, centre-crop, normalise), written once.

The parameters come from the image encoder (`extract/image_encoder.py`); the steps follow torchvision's
Resize(int) + CenterCrop + Normalize on a PIL image, which is what the SPP-SCL code used, done here with
Pillow and NumPy so that no torchvision is needed.
"""

from __future__ import annotations

import os
import stat
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
    # The paper's torchvision Resize is bilinear; timm weights name their own (bicubic for most ViTs).
    interpolation: str = "bilinear"

    def __post_init__(self):
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"image crop {self.crop} must be positive and at most the resize {self.resize}")
        if self.interpolation not in RESAMPLING:
            raise ValueError(f"image interpolation {self.interpolation!r}: choose one of {sorted(RESAMPLING)}")

    def as_dict(self) -> dict:
        """The fingerprint's form; bilinear, which every cache used before the choice existed, is left unsaid."""
        values = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}
        if values["interpolation"] == "bilinear":
            del values["interpolation"]
        return values


RESAMPLING = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


class ImageProblem(Exception):
    """An image that cannot be used; the message is the reason written to the skip report."""


MAX_ASPECT = 50  # wider (or taller) than this, the resized image before the crop would be enormous


def open_regular_file(path: Path):
    """`path` opened for reading if it is a regular file. Opened without blocking first, so that a FIFO or a
    device given as an image is refused at once instead of waiting for ever for a writer."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageProblem(f"not a regular file (a FIFO, device or folder): {path}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_rgb(path) -> Image.Image:
    """Decode an image (a path, something with open(), or a binary file object) fully and return it as RGB; transparency is laid over
    white. Any failure is an ImageProblem: a corrupt file makes Pillow raise many kinds of exceptions."""
    try:
        if isinstance(path, (str, os.PathLike)):
            source = open_regular_file(path)
        else:  # an image held in a dataset's table (extract/hf_dataset.py), or a binary file object
            source = path.open("rb") if hasattr(path, "open") else path
        with source, Image.open(source) as image:
            width, height = image.size
            if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
                raise ImageProblem(f"image too large to decode safely ({width} x {height} pixels): {path}")
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise ImageProblem(f"extreme aspect ratio ({width} x {height} pixels): {path}")
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
    except ImageProblem:
        raise
    except FileNotFoundError:
        raise ImageProblem(f"image not found: {path}") from None
    except Image.UnidentifiedImageError:
        raise ImageProblem(f"not a decodable image: {path}") from None
    except Exception as error:  # truncated or corrupt data: OSError, SyntaxError, EOFError, struct.error...
        raise ImageProblem(f"image could not be decoded ({type(error).__name__}: {error}): {path}") from None


def to_pixels(image: Image.Image, preprocess: Preprocess) -> torch.Tensor:
    """[3, crop, crop] float32: shorter side to `resize`, centre crop, normalise."""
    return normalise(resize_and_crop(image, preprocess), preprocess)


def resize_and_crop(image: Image.Image, preprocess: Preprocess) -> Image.Image:
    """The shorter side to `resize` (by the encoder's interpolation), then the centre crop `crop` x `crop`."""
    width, height = image.size
    if width <= height:
        size = (preprocess.resize, int(preprocess.resize * height / width))
    else:
        size = (int(preprocess.resize * width / height), preprocess.resize)
    if size != (width, height):
        image = image.resize(size, RESAMPLING[preprocess.interpolation])
    width, height = image.size
    crop = preprocess.crop  # at most the shorter side, which is now `resize`
    top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
    return image.crop((left, top, left + crop, top + crop))


def normalise(image, preprocess: Preprocess) -> torch.Tensor:
    """An RGB image (or its [h, w, 3] uint8 array) as [3, h, w] float32 normalised by the encoder's statistics."""
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(preprocess.mean, dtype=np.float32)) / np.asarray(preprocess.std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def load_pixels(path: Path, preprocess: Preprocess) -> torch.Tensor:
    return to_pixels(load_rgb(path), preprocess)
