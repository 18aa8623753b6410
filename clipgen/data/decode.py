"""Image decoding and the bad-sample policy.

Real corpora always hold a few broken files: truncated JPEGs from interrupted downloads, zero-byte
placeholders, HTML error pages saved as `.jpg`. The policy everywhere in clipgen is the same:
such a sample is skipped, the run goes on, and the skip is reported with enough detail (shard or
file, key, reason) for a person to find and fix the file. Nothing here ever raises past the
caller for bad *data*; only programming errors propagate.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Extensions (webdataset suffixes, and file suffixes of `clipgen convert folder`) that may hold an
# image, in the order a sample is searched.
IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")

# PIL's format name -> the extension clipgen stores. Only formats every reader handles well are
# kept byte-for-byte; anything else is re-encoded losslessly to PNG (see `probe_image`).
KEPT_FORMATS: dict[str, str] = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}

# Modes PIL can write as PNG, 16-bit grey included; others (CMYK, 32-bit "I", float "F", from
# TIFF) are converted before a re-encode (`reencode_png`).
PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B", "I;16L"})


class BadImageError(ValueError):
    """The bytes are not a fully decodable image; `str(err)` is a short reason for a report."""


@dataclass(frozen=True)
class ImageProbe:
    """What a full decode found out about an image: its storage extension and its size."""

    ext: str | None  # "jpg" / "png" / "webp", or None when the format is not one we keep as-is
    format: str  # PIL's name for the format, e.g. "JPEG", "BMP"
    width: int
    height: int
    mode: str = "RGB"  # PIL's mode of the decoded pixels, e.g. "I;16" for 16-bit grey
    frames: int = 1  # an animated GIF's or multi-page TIFF's count; only the first is used


def _open_fully(data: bytes, min_side: int | None = None) -> Image.Image:
    """Open and decode every pixel; PIL's `open` alone reads only the header, so a truncated
    file would otherwise pass and fail later inside a training worker.

    With `min_side`, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, via
    PIL's `draft`) as long as both sides stay >= min_side: several times faster for photos much
    larger than the training resolution, which is then reached by a normal resize."""
    if len(data) == 0:
        raise BadImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # PIL warns (not raises) on oddities like bad EXIF; they do not make an image unusable.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            if min_side is not None and image.format == "JPEG":
                image.draft("RGB", (min_side, min_side))
            image.load()
        return image
    except UnidentifiedImageError:
        raise BadImageError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as err:
        raise BadImageError(f"too many pixels: {err}") from None
    except OSError as err:
        if "truncated" in str(err).lower():
            raise BadImageError("truncated image") from None
        raise BadImageError(f"corrupt image: {err}") from None
    except Exception as err:  # noqa: BLE001 - PIL's plugins raise many exception types on bad input
        raise BadImageError(f"cannot decode: {type(err).__name__}: {err}") from None


def probe_image(data: bytes) -> ImageProbe:
    """Fully decode `data` (raising `BadImageError`) and say how it should be stored."""
    image = _open_fully(data)
    fmt = image.format or "unknown"
    frames = getattr(image, "n_frames", 1)
    return ImageProbe(KEPT_FORMATS.get(fmt), fmt, image.width, image.height, image.mode, frames)


def reencode_png(data: bytes) -> bytes:
    """Re-encode an image in a format we do not store as-is (BMP, GIF, TIFF...) as PNG: losslessly
    for every mode PNG holds (16-bit grey stays 16-bit), the first frame of an animation or
    multi-page file; other modes (CMYK, 32-bit integer, float) become 8-bit RGB first."""
    # PNG keeps no orientation tag (a TIFF may have one), so the pixels are turned upright here
    image = ImageOps.exif_transpose(_open_fully(data))
    if image.mode == "I":
        values = np.asarray(image)
        if values.size and values.min() >= 0 and values.max() <= 65535:
            image = Image.fromarray(values.astype(np.uint16))  # "I;16": 16-bit PNG, still lossless
    if image.mode not in PNG_MODES:
        image = to_rgb(image)
    out = io.BytesIO()
    try:
        image.save(out, format="PNG")
    except Exception as err:  # noqa: BLE001 - an odd file can still fail to encode; skip it, never crash
        raise BadImageError(f"cannot re-encode as PNG: {err}") from None
    return out.getvalue()


def to_8bit(image: Image.Image) -> Image.Image:
    """An 8-bit ("L") copy of a 16-bit or float grey image; other modes unchanged.

    PIL's convert("RGB"/"L") clips these modes' values at 255 instead of scaling them, so a 16-bit
    PNG (mode "I;16", or "I" in older Pillow) comes out nearly white. 16-bit values are shifted
    right by 8, as PIL itself reads 48-bit RGB PNGs (as 8-bit "RGB"): a grey decodes the same
    whether it was stored as 16-bit grey or 16-bit RGB. Float ("F") images in [0, 1] are scaled
    by 255; any other float range is clipped to [0, 255]."""
    if image.mode.startswith("I;16") or image.mode == "I":
        # "I" is 32-bit, but what it holds in practice is 16-bit samples (older Pillow's 16-bit
        # PNGs, TIFFs); values outside 0..65535 are clipped
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535) >> 8
    elif image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        values = np.rint(values * (255.0 if values.size and values.max() <= 1.0 else 1.0))
    else:
        return image
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB view of a decoded image, upright, at 8 bits (16-bit images scaled, not clipped: see
    `to_8bit`) and with transparency flattened onto white."""
    # Camera JPEGs store rotation in EXIF instead of rotating pixels; training on them unrotated
    # would teach the model sideways images.
    image = to_8bit(ImageOps.exif_transpose(image))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        # Plain convert("RGB") would drop alpha and expose whatever colour hides under it
        # (often black); white is what a viewer shows.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_rgb(data: bytes, min_side: int | None = None) -> Image.Image:
    """Decode image bytes to an RGB PIL image, or raise `BadImageError` with a short reason.
    `min_side`: the caller needs no more than this many pixels on the shorter side (see
    `_open_fully`); the result may still be larger."""
    image = _open_fully(data, min_side)
    try:
        return to_rgb(image)
    except Exception as err:  # noqa: BLE001 - a mode conversion can still fail on odd files
        raise BadImageError(f"cannot convert to RGB: {err}") from None


@dataclass(frozen=True)
class BadSample:
    """One skipped sample. Travels in-band through the loader pipeline (it pickles across
    DataLoader workers), so the main process learns about skips that happened in a worker."""

    shard: str
    key: str | None
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BadSampleLog:
    """Every skip seen by one reader: `count` counts each occurrence (a resampled stream may meet
    the same bad sample again); `items` lists each distinct (shard, key) once, first seen first,
    so an endless stream cannot grow it without bound."""

    count: int = 0
    items: list[dict] = field(default_factory=list)
    _seen: set = field(default_factory=set, repr=False)

    def record(self, bad: BadSample) -> bool:
        """Count `bad`; return True the first time this (shard, key, reason) is seen."""
        self.count += 1
        identity = (bad.shard, bad.key, bad.reason)
        if identity in self._seen:
            return False
        self._seen.add(identity)
        self.items.append(bad.as_dict())
        return True
