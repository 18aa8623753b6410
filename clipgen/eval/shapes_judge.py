"""Reads colour, shape, size and position back from a shapes-zh image, by geometry.

The judge knows nothing of the generator, the VQGAN or the CLIP: it segments the object from the
grey background, takes the largest connected blob, and reads
- colour: the palette colour nearest (in RGB) to the blob's median colour;
- size: 大 when the bounding box's side is past the midpoint between the two size ranges;
- position: the 3x3 grid cell holding the bounding-box centre;
- shape: the template (disc, square, triangle, cross) with the best overlap (IoU) with the blob,
  each template drawn from its continuous definition over the blob's bounding box, not with the
  corpus renderer's integer rules, so that generated shapes that are slightly off still match.

Generated images are blurry at the edges; the foreground threshold sits halfway between the
background and the palette colour nearest to it, so an edge pixel counts when it is more object
than background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from clipgen.data.shapes import (
    ATTRIBUTES,
    BACKGROUND_RGB,
    COLOUR_RGB,
    POSITIONS,
    SIZES,
    attributes_mentioned,
    extent_range,
)

_PALETTE_NAMES = list(COLOUR_RGB)
_PALETTE = np.array([COLOUR_RGB[name] for name in _PALETTE_NAMES], dtype=np.float32)
_BACKGROUND = np.array(BACKGROUND_RGB, dtype=np.float32)
# Half the smallest per-channel (L-inf) distance from the background to any palette colour.
FOREGROUND_THRESHOLD = float(np.abs(_PALETTE - _BACKGROUND).max(axis=1).min() / 2)
MIN_OBJECT_PIXELS = 4  # fewer is noise, not an object
SHAPE_NAMES = tuple(value.canonical for value in ATTRIBUTES["shape"])


@dataclass(frozen=True)
class Reading:
    """What the judge read from one image; every field is None when no object was found."""

    colour: str | None
    shape: str | None
    size: str | None
    position: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in ATTRIBUTES}


def _template(shape: str, height: int, width: int) -> np.ndarray:
    """A shape's continuous definition sampled at the pixel centres of a height x width box, in
    coordinates where the box spans [-1, 1] on both axes (y grows downwards)."""
    y = (2 * np.arange(height) + 1) / height - 1
    x = (2 * np.arange(width) + 1) / width - 1
    v, u = y[:, None], x[None, :]
    if shape == "圆形":
        mask = u * u + v * v <= 1.0
    elif shape == "正方形":
        mask = np.ones((height, width), dtype=bool)
    elif shape == "三角形":  # apex at the top centre, base along the bottom
        mask = np.abs(u) <= (v + 1) / 2 + 1.0 / width
    elif shape == "十字":  # bars one third of the extent thick
        mask = (np.abs(u) <= 1 / 3) | (np.abs(v) <= 1 / 3)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.broadcast_to(mask, (height, width))


def _size_threshold(canvas: int) -> float:
    small_high = extent_range(SIZES[1].canonical, canvas)[1]
    large_low = extent_range(SIZES[0].canonical, canvas)[0]
    return (small_high + large_low) / 2


def read_image(image: np.ndarray | Image.Image) -> Reading:
    """Judge one RGB image (uint8 [S, S, 3] array or PIL image)."""
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] != pixels.shape[1]:
        raise ValueError(f"expected a square RGB image, got an array of shape {pixels.shape}")
    canvas = pixels.shape[0]
    foreground = np.abs(pixels - _BACKGROUND).max(axis=2) > FOREGROUND_THRESHOLD
    labels, count = ndimage.label(foreground, structure=np.ones((3, 3)))
    if count == 0:
        return Reading(None, None, None, None)
    sizes = np.bincount(labels.ravel())[1:]
    blob = labels == 1 + int(sizes.argmax())
    if sizes.max() < MIN_OBJECT_PIXELS:
        return Reading(None, None, None, None)

    colour = _PALETTE_NAMES[int(np.linalg.norm(_PALETTE - np.median(pixels[blob], axis=0), axis=1).argmin())]

    rows, cols = np.nonzero(blob)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    extent = max(y1 - y0, x1 - x0)
    size = SIZES[0].canonical if extent > _size_threshold(canvas) else SIZES[1].canonical
    row = min(int(3 * (y0 + y1) / 2 / canvas), 2)
    col = min(int(3 * (x0 + x1) / 2 / canvas), 2)
    position = POSITIONS[3 * row + col].canonical

    crop = blob[y0:y1, x0:x1]
    ious = []
    for shape in SHAPE_NAMES:
        template = _template(shape, y1 - y0, x1 - x0)
        ious.append((crop & template).sum() / (crop | template).sum())
    best = int(np.argmax(ious))
    return Reading(colour, SHAPE_NAMES[best], size, position)


def wanted_attributes(prompt: str) -> dict[str, str]:
    """The attributes a prompt asks for, canonical words; an attribute the prompt names more than
    once with different values is left out (no answer could be right)."""
    return {name: next(iter(values)) for name, values in attributes_mentioned(prompt).items() if len(values) == 1}


class AttributeScore:
    """Per-attribute counts of images that show what was asked, over the images whose prompt
    (or label set) asked for that attribute."""

    def __init__(self) -> None:
        self.correct = {name: 0 for name in ATTRIBUTES}
        self.asked = {name: 0 for name in ATTRIBUTES}
        self.unreadable = 0
        self.images = 0

    def add(self, reading: Reading, wanted: Mapping[str, str]) -> None:
        self.images += 1
        self.unreadable += reading.colour is None
        for name, value in wanted.items():
            self.asked[name] += 1
            self.correct[name] += getattr(reading, name) == value

    def add_all(self, readings: Iterable[Reading], wanted: Iterable[Mapping[str, str]]) -> "AttributeScore":
        for reading, want in zip(readings, wanted, strict=True):
            self.add(reading, want)
        return self

    def all_reduce(self) -> "AttributeScore":
        """Sum the counts over ranks (torchrun); a no-op in one process."""
        import torch

        from clipgen.engine.dist import all_reduce_sum

        counts = torch.tensor([*self.correct.values(), *self.asked.values(), self.unreadable, self.images], dtype=torch.float64)
        counts = all_reduce_sum(counts).long().tolist()
        n = len(ATTRIBUTES)
        self.correct = dict(zip(ATTRIBUTES, counts[:n]))
        self.asked = dict(zip(ATTRIBUTES, counts[n : 2 * n]))
        self.unreadable, self.images = counts[2 * n], counts[2 * n + 1]
        return self

    def accuracy(self) -> dict[str, float]:
        """Percent correct per attribute (NaN for an attribute no prompt asked for)."""
        return {name: 100.0 * self.correct[name] / self.asked[name] if self.asked[name] else float("nan") for name in ATTRIBUTES}


def score_prompts(images: Sequence[np.ndarray | Image.Image], prompts: Sequence[str]) -> AttributeScore:
    """Judge images generated from `prompts` (one prompt per image) against what each prompt names."""
    return AttributeScore().add_all((read_image(image) for image in images), (wanted_attributes(p) for p in prompts))
