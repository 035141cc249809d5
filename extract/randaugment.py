"""CLMLF's image augmentation, written here in Pillow: RandAugment with 2 operations at magnitude 14 on the decoded
image, then the usual resize and centre crop, then a horizontal flip with probability 0.5.

What CLMLF's and MDSE's training code does (both use the same operation list, that of the pytorch-randaugment
package; restated here as facts, the code is ours): pick `ops` operations from the 16 below uniformly *with
replacement*, and apply each at the value `magnitude / 30 * (high - low) + low` of its range. The geometric ones
(rotate, shear, translate) take a random sign. Resampling is nearest-neighbour and uncovered pixels are black, as
in Pillow's defaults that code relied on.

    operation      range        at magnitude 14       what it does
    AutoContrast   -            -                     stretch each channel to 0..255 (ImageOps.autocontrast)
    Equalize       -            -                     histogram equalisation (ImageOps.equalize)
    Invert         -            -                     255 - value
    Rotate         0..30        14 degrees            rotate by +-value (no expansion)
    Posterize      0..4         1 bit                 keep max(1, int(value)) bits per channel
    Solarize       0..256       119.47                invert values >= value
    SolarizeAdd    0..110       51.33                 add value (floor, clip to 255), then invert values >= 128
    Color          0.1..1.9     0.94                  ImageEnhance.Color factor
    Contrast       0.1..1.9     0.94                  ImageEnhance.Contrast factor
    Brightness     0.1..1.9     0.94                  ImageEnhance.Brightness factor
    Sharpness      0.1..1.9     0.94                  ImageEnhance.Sharpness factor
    ShearX         0..0.3       0.14                  affine x' = x + value * y (sign random)
    ShearY         0..0.3       0.14                  affine y' = y + value * x (sign random)
    CutoutAbs      0..40        18.67 px              a value-sided box at a random centre, filled (125, 123, 114)
    TranslateXabs  0..100       46.67 px              shift by +-value pixels along x
    TranslateYabs  0..100       46.67 px              shift by +-value pixels along y

Every random choice comes from the numpy Generator the caller gives (one per record and view, see
extract/view_streams.py), never from a global stream, so a view is reproduced exactly by any rerun.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

MAGNITUDE_SCALE = 30  # a magnitude is out of 30, as in the RandAugment code CLMLF used
CUTOUT_FILL = (125, 123, 114)
SOLARIZE_ADD_THRESHOLD = 128


@dataclass(frozen=True)
class Operation:
    name: str
    low: float
    high: float
    signed: bool = False  # the value takes a random sign
    unit: str = ""

    def value(self, magnitude: int) -> float:
        return magnitude / MAGNITUDE_SCALE * (self.high - self.low) + self.low


OPERATIONS = (
    Operation("AutoContrast", 0, 1),
    Operation("Equalize", 0, 1),
    Operation("Invert", 0, 1),
    Operation("Rotate", 0, 30, signed=True, unit="degrees"),
    Operation("Posterize", 0, 4, unit="bits (max(1, int(value)))"),
    Operation("Solarize", 0, 256, unit="threshold"),
    Operation("SolarizeAdd", 0, 110, unit="added, then solarize at 128"),
    Operation("Color", 0.1, 1.9, unit="enhance factor"),
    Operation("Contrast", 0.1, 1.9, unit="enhance factor"),
    Operation("Brightness", 0.1, 1.9, unit="enhance factor"),
    Operation("Sharpness", 0.1, 1.9, unit="enhance factor"),
    Operation("ShearX", 0.0, 0.3, signed=True, unit="shear"),
    Operation("ShearY", 0.0, 0.3, signed=True, unit="shear"),
    Operation("CutoutAbs", 0, 40, unit="box side in pixels, fill (125, 123, 114)"),
    Operation("TranslateXabs", 0.0, 100, signed=True, unit="pixels"),
    Operation("TranslateYabs", 0.0, 100, signed=True, unit="pixels"),
)


def _affine(image: Image.Image, coefficients: tuple) -> Image.Image:
    return image.transform(image.size, Image.Transform.AFFINE, coefficients, resample=Image.Resampling.NEAREST)


def _solarize_add(image: Image.Image, value: float) -> Image.Image:
    added = np.clip(np.asarray(image, dtype=np.float64) + value, 0, 255).astype(np.uint8)  # astype floors
    return ImageOps.solarize(Image.fromarray(added, image.mode), SOLARIZE_ADD_THRESHOLD)


def _cutout(image: Image.Image, side: float, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    centre_x, centre_y = rng.uniform(0, width), rng.uniform(0, height)
    left, top = int(max(0.0, centre_x - side / 2.0)), int(max(0.0, centre_y - side / 2.0))
    box = (left, top, min(width, left + side), min(height, top + side))
    image = image.copy()
    ImageDraw.Draw(image).rectangle(box, CUTOUT_FILL)
    return image


def apply_operation(image: Image.Image, operation: Operation, value: float, rng: np.random.Generator) -> Image.Image:
    """One operation on an RGB image at `value` (the random sign, when the operation has one, is drawn here)."""
    if operation.signed and rng.random() < 0.5:
        value = -value
    name = operation.name
    if name == "AutoContrast":
        return ImageOps.autocontrast(image)
    if name == "Equalize":
        return ImageOps.equalize(image)
    if name == "Invert":
        return ImageOps.invert(image)
    if name == "Rotate":
        return image.rotate(value, resample=Image.Resampling.NEAREST)
    if name == "Posterize":
        return ImageOps.posterize(image, max(1, int(value)))
    if name == "Solarize":
        return ImageOps.solarize(image, value)
    if name == "SolarizeAdd":
        return _solarize_add(image, value)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return getattr(ImageEnhance, name)(image).enhance(value)
    if name == "ShearX":
        return _affine(image, (1, value, 0, 0, 1, 0))
    if name == "ShearY":
        return _affine(image, (1, 0, 0, value, 1, 0))
    if name == "CutoutAbs":
        return _cutout(image, value, rng)
    if name == "TranslateXabs":
        return _affine(image, (1, 0, value, 0, 1, 0))
    if name == "TranslateYabs":
        return _affine(image, (1, 0, 0, 0, 1, value))
    raise ValueError(f"unknown RandAugment operation {name!r}")


@dataclass(frozen=True)
class RandAugment:
    """`ops` operations drawn with replacement, each at `magnitude` (of 30); then, after the resize and crop,
    a horizontal flip with probability `flip`."""

    ops: int = 2
    magnitude: int = 14
    flip: float = 0.5

    def __post_init__(self):
        if self.ops < 0 or not 0 <= self.magnitude <= MAGNITUDE_SCALE or not 0.0 <= self.flip <= 1.0:
            raise ValueError(
                f"RandAugment needs ops >= 0, magnitude in 0..{MAGNITUDE_SCALE} and a flip probability in [0, 1]; "
                f"got {self.ops}, {self.magnitude}, {self.flip}"
            )

    def augment(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """The RandAugment part (before resize and crop), on an RGB image."""
        for choice in rng.integers(0, len(OPERATIONS), size=self.ops):
            operation = OPERATIONS[int(choice)]
            image = apply_operation(image, operation, operation.value(self.magnitude), rng)
        return image

    def flips(self, rng: np.random.Generator) -> bool:
        """Whether this view is flipped (drawn after the operations, from the same stream)."""
        return bool(rng.random() < self.flip)

    def describe(self) -> dict:
        """Everything that decides the augmented pixels, for the cache fingerprint."""
        return {
            "name": "RandAugment (CLMLF / MDSE operation list)",
            "ops": self.ops,
            "magnitude": self.magnitude,
            "magnitude_scale": MAGNITUDE_SCALE,
            "choice": "uniform, with replacement",
            "operations": [
                {
                    "name": op.name,
                    "range": [op.low, op.high],
                    "value": round(op.value(self.magnitude), 6),
                    "random_sign": op.signed,
                    **({"unit": op.unit} if op.unit else {}),
                }
                for op in OPERATIONS
            ],
            "resample": "nearest",
            "fill": [0, 0, 0],
            "order": "operations on the decoded image, then resize and centre crop, then horizontal flip",
            "horizontal_flip": self.flip,
        }
