"""shapes-zh: the built-in synthetic corpus (spec: shapes-zh.md), drawn exactly and reproducibly.

One flat-coloured object on a grey (128, 128, 128) square canvas of side S (a multiple of 16).
Anti-aliasing is OFF: every pixel is either background or exactly the object's colour, so a judge
can read colour, shape, size and position back from pixels without tolerance.

Pixel rules (integer arithmetic; e = extent = the bounding-box side in pixels, and a pixel of the
e x e box is tested at its centre, measured from the box centre in half-pixels u, v in
{1-e, 3-e, ..., e-1}):
- disc:      u^2 + v^2 <= e^2                       (centre inside the circle of diameter e)
- square:    every pixel of the box
- triangle:  row r (0 = apex row) fills |u| <= r + 1, so the apex row is 1 pixel wide (e odd) or
             2 (e even) and the base row is e wide: apex up, base width = height = e
- cross:     |u| <= t - 1 or |v| <= t - 1: two centred bars of thickness t, the integer nearest
             e/3 with the parity of e (so that a bar can be centred exactly)
All four touch every side of their box, so the drawn bounding box is exactly e x e.
At e = 4 (small shapes on a 16-pixel canvas only) the disc and the cross are the same 12 pixels;
no 4 x 4 drawing can tell them apart, so judge shapes on canvases of 32 pixels or more.

Extents are integers in [ceil(0.45 S), floor(0.55 S)] (大) or [ceil(0.25 S), floor(0.32 S)] (小).
The box centre lies in its 3 x 3 grid cell at least S/24 from every border the cell shares with
another cell, and the box lies inside the canvas; the top-left corner is drawn uniformly from the
integer positions that satisfy this.

Sample i is drawn from `numpy.random.default_rng([seed, i])` alone, so it is the same however many
samples are made and however they are split into shards.
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

GENERATOR_VERSION = "shapes-zh/1"
BACKGROUND_RGB = (128, 128, 128)
DEFAULT_CANVAS_SIZE = 32


@dataclass(frozen=True)
class AttributeValue:
    """One value of an attribute: its canonical Chinese word, the synonyms a caption may use
    instead, and an English word or phrase."""

    canonical: str
    synonyms: tuple[str, ...]
    english: str

    @property
    def words(self) -> tuple[str, ...]:
        return (self.canonical, *self.synonyms)


COLOURS: tuple[AttributeValue, ...] = (
    AttributeValue("红色", ("红",), "red"),
    AttributeValue("绿色", ("绿",), "green"),
    AttributeValue("蓝色", ("蓝",), "blue"),
    AttributeValue("黄色", ("黄",), "yellow"),
    AttributeValue("紫色", ("紫",), "purple"),
    AttributeValue("橙色", ("橙",), "orange"),
    AttributeValue("白色", ("白",), "white"),
    AttributeValue("黑色", ("黑",), "black"),
)
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "红色": (220, 40, 40),
    "绿色": (40, 180, 60),
    "蓝色": (40, 70, 220),
    "黄色": (235, 210, 40),
    "紫色": (150, 60, 190),
    "橙色": (240, 140, 30),
    "白色": (240, 240, 240),
    "黑色": (20, 20, 20),
}
SHAPES: tuple[AttributeValue, ...] = (
    AttributeValue("圆形", ("圆", "圆圈"), "circle"),
    AttributeValue("正方形", ("方块", "方形"), "square"),
    AttributeValue("三角形", ("三角",), "triangle"),
    AttributeValue("十字", ("十字形", "加号"), "cross"),
)
SIZES: tuple[AttributeValue, ...] = (
    AttributeValue("大", ("大的",), "large"),
    AttributeValue("小", ("小的",), "small"),
)
# Extent (bounding-box side) as a fraction of S, as (numerator, denominator) pairs for exact bounds.
SIZE_EXTENT_PERCENT: dict[str, tuple[int, int]] = {"大": (45, 55), "小": (25, 32)}
POSITIONS: tuple[AttributeValue, ...] = (
    AttributeValue("左上", ("左上角",), "in the top left"),
    AttributeValue("上方", ("上面",), "at the top"),
    AttributeValue("右上", ("右上角",), "in the top right"),
    AttributeValue("左边", ("左侧",), "on the left"),
    AttributeValue("中间", ("中央",), "in the middle"),
    AttributeValue("右边", ("右侧",), "on the right"),
    AttributeValue("左下", ("左下角",), "in the bottom left"),
    AttributeValue("下方", ("下面",), "at the bottom"),
    AttributeValue("右下", ("右下角",), "in the bottom right"),
)
# (row, column) of each position's grid cell; row 0 is the top.
POSITION_CELL: dict[str, tuple[int, int]] = {
    value.canonical: divmod(i, 3) for i, value in enumerate(POSITIONS)
}
ATTRIBUTES: dict[str, tuple[AttributeValue, ...]] = {
    "colour": COLOURS,
    "shape": SHAPES,
    "size": SIZES,
    "position": POSITIONS,
}

# Paired caption templates (Chinese, English). Slots: {colour} {shape} {position} take any word of
# the value; {size} any size word; {size_bare} only 大/小, for places followed by 的 ("大的的" is
# wrong). A template may leave attributes out. The fixed text uses no attribute word, which the
# tests check, so a caption names exactly the attributes of its slots.
CAPTION_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("{position}有一个{size}{colour}{shape}", "there is a {size} {colour} {shape} {position}"),
    ("{size_bare}的{colour}{shape}在{position}", "a {size} {colour} {shape} {position}"),
    ("一个{colour}的{shape}", "a {colour} {shape}"),
    ("{colour}{shape}", "a {colour} {shape}"),
    ("画面{position}是一个{colour}{shape}", "a {colour} {shape} {position}"),
    ("{position}的{shape}", "a {shape} {position}"),
    ("一个{size}{shape}", "a {size} {shape}"),
    ("{colour}的{size_bare}{shape}", "a {size} {colour} {shape}"),
    ("一个{shape}，{colour}，在{position}", "a {shape}, {colour}, {position}"),
    ("{position}有一个{shape}", "there is a {shape} {position}"),
)
_SLOT = re.compile(r"\{(\w+)\}")


def template_attributes(template: str) -> set[str]:
    """Attributes a Chinese template names ({size_bare} counts as size)."""
    return {slot.removesuffix("_bare") for slot in _SLOT.findall(template)}


# ---------------------------------------------------------------- reading words back


def _build_word_index() -> dict[str, tuple[str, str]]:
    index: dict[str, tuple[str, str]] = {}
    for attribute, values in ATTRIBUTES.items():
        for value in values:
            for word in value.words:
                assert word not in index, f"word {word} is ambiguous"
                index[word] = (attribute, value.canonical)
    return index


WORD_TO_ATTRIBUTE: dict[str, tuple[str, str]] = _build_word_index()
_WORD_LENGTHS = sorted({len(w) for w in WORD_TO_ATTRIBUTE}, reverse=True)


def attributes_mentioned(text: str) -> dict[str, set[str]]:
    """Canonical values that `text` names, per attribute, by longest-match scanning (so 左上角 is
    one word, not 左上 + 角, and 上方形 reads as 上方 + 形). Useful for judging and for prompts."""
    found: dict[str, set[str]] = {attribute: set() for attribute in ATTRIBUTES}
    i = 0
    while i < len(text):
        for length in _WORD_LENGTHS:
            hit = WORD_TO_ATTRIBUTE.get(text[i : i + length])
            if hit is not None:
                found[hit[0]].add(hit[1])
                i += length
                break
        else:
            i += 1
    return found


# ---------------------------------------------------------------- geometry


def check_canvas_size(size: int) -> None:
    if size < 16 or size % 16:
        raise ValueError(f"shapes-zh canvas size must be a positive multiple of 16, got {size}")


def extent_range(size_word: str, canvas: int) -> tuple[int, int]:
    """Inclusive integer range of extents for 大/小 on a canvas of side `canvas`."""
    low_pct, high_pct = SIZE_EXTENT_PERCENT[size_word]
    return -(-low_pct * canvas // 100), high_pct * canvas // 100


def corner_choices(cell: int, extent: int, canvas: int) -> np.ndarray:
    """Integer top-left coordinates (along one axis) that put the box inside the canvas and its
    centre inside grid cell `cell` (0, 1, 2) at least canvas/24 from the borders shared with other
    cells. Worked in 48ths of a pixel so that S/3 and S/24 are exact integers."""
    corners = np.arange(0, canvas - extent + 1)
    centre_48 = 24 * (2 * corners + extent)  # 48 x the box centre
    ok = np.ones_like(corners, dtype=bool)
    if cell > 0:  # shares its lower border with the previous cell
        ok &= centre_48 >= 16 * cell * canvas + 2 * canvas
    if cell < 2:  # shares its upper border with the next cell
        ok &= centre_48 <= 16 * (cell + 1) * canvas - 2 * canvas
    choices = corners[ok]
    if len(choices) == 0:  # impossible for valid sizes (tested for every S up to 512)
        raise AssertionError(f"no position for cell {cell}, extent {extent}, canvas {canvas}")
    return choices


def cross_thickness(extent: int) -> int:
    """The integer nearest extent/3 with the parity of extent (an exactly centred bar)."""
    candidates = range(extent % 2 or 2, extent + 1, 2)
    return min(candidates, key=lambda t: abs(3 * t - extent))


@lru_cache(maxsize=None)
def shape_mask(shape: str, extent: int) -> np.ndarray:
    """Boolean [extent, extent] mask of a shape (rules in the module docstring); read-only."""
    half_pixel = 2 * np.arange(extent) + 1 - extent  # centre offsets in half-pixels
    v, u = half_pixel[:, None], half_pixel[None, :]
    if shape == "圆形":
        mask = u * u + v * v <= extent * extent
    elif shape == "正方形":
        mask = np.ones((extent, extent), dtype=bool)
    elif shape == "三角形":
        row = np.arange(extent)[:, None]
        mask = np.abs(u) <= row + 1
    elif shape == "十字":
        t = cross_thickness(extent)
        mask = (np.abs(u) <= t - 1) | (np.abs(v) <= t - 1)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {[s.canonical for s in SHAPES]}")
    mask = np.broadcast_to(mask, (extent, extent)).copy()
    mask.setflags(write=False)
    return mask


# ---------------------------------------------------------------- samples


@dataclass(frozen=True)
class ShapeSample:
    index: int
    image: np.ndarray  # [S, S, 3] uint8
    labels: dict[str, str]  # attribute -> canonical word
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)
    caption: str
    caption_en: str

    def meta(self, seed: int) -> dict:
        """The sample's json: labels, captions and the drawing's ground truth."""
        return {
            "labels": dict(self.labels),
            "caption": self.caption,
            "caption_en": self.caption_en,
            "bbox": list(self.bbox),
            "index": self.index,
            "seed": seed,
            "generator": GENERATOR_VERSION,
        }

    def png(self) -> bytes:
        """Lossless, so the flat colours survive storage exactly."""
        out = io.BytesIO()
        Image.fromarray(self.image).save(out, format="PNG", compress_level=1)
        return out.getvalue()


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def make_caption(labels: dict[str, str], rng: np.random.Generator) -> tuple[str, str]:
    """A (Chinese, English) caption pair from a random template and random synonyms."""
    template_zh, template_en = _pick(rng, CAPTION_TEMPLATES)
    values = {name: next(v for v in ATTRIBUTES[name] if v.canonical == labels[name]) for name in ATTRIBUTES}
    words_zh = {name: _pick(rng, value.words) for name, value in values.items()}
    words_zh["size_bare"] = values["size"].canonical
    words_en = {name: value.english for name, value in values.items()}
    caption_en = template_en.format(**words_en)
    caption_en = re.sub(r"\ba (?=[aeiou])", "an ", caption_en)  # "an orange circle"
    return template_zh.format(**words_zh), caption_en


def full_prompts(n: int, seed: int = 0) -> list[tuple[str, dict[str, str]]]:
    """`n` Chinese prompts that name all four attributes, with their labels: the label sets cycle
    through a seeded permutation of all 576 combinations (so n = 576 asks for each exactly once),
    and each prompt takes a random all-attribute template and random synonyms."""
    rng = np.random.default_rng([seed, n])
    full = [t for t in CAPTION_TEMPLATES if template_attributes(t[0]) == set(ATTRIBUTES)]
    combos = list(itertools.product(*(values for values in ATTRIBUTES.values())))
    order = rng.permutation(len(combos))
    prompts = []
    for i in range(n):
        combo = combos[order[i % len(combos)]]
        labels = {name: value.canonical for name, value in zip(ATTRIBUTES, combo)}
        template = _pick(rng, full)[0]
        words = {name: _pick(rng, value.words) for name, value in zip(ATTRIBUTES, combo)}
        words["size_bare"] = labels["size"]
        prompts.append((template.format(**words), labels))
    return prompts


def render_sample(index: int, seed: int = 0, size: int = DEFAULT_CANVAS_SIZE) -> ShapeSample:
    """Draw sample `index` of the corpus with this `seed` on an S = `size` canvas."""
    check_canvas_size(size)
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be non-negative, got index={index}, seed={seed}")
    rng = np.random.default_rng([seed, index])
    labels = {name: _pick(rng, values).canonical for name, values in ATTRIBUTES.items()}
    low, high = extent_range(labels["size"], size)
    extent = int(rng.integers(low, high + 1))
    row, col = POSITION_CELL[labels["position"]]
    x0 = int(_pick(rng, corner_choices(col, extent, size)))
    y0 = int(_pick(rng, corner_choices(row, extent, size)))

    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND_RGB
    box = image[y0 : y0 + extent, x0 : x0 + extent]
    box[shape_mask(labels["shape"], extent)] = COLOUR_RGB[labels["colour"]]
    caption, caption_en = make_caption(labels, rng)
    return ShapeSample(index, image, labels, (x0, y0, x0 + extent, y0 + extent), caption, caption_en)
