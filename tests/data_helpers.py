"""Tiny in-memory images and shards for the data-layer tests."""

from __future__ import annotations

import io
from pathlib import Path

import webdataset as wds
from PIL import Image


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (20, 16), colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    """A JPEG cut in half: PIL reads its header but fails to decode the pixels."""
    full = image_bytes("JPEG", size=(64, 64))
    return full[: len(full) // 2]


def write_tar(path: Path, samples: list[dict]) -> Path:
    """Write webdataset samples ({"__key__": ..., ext: bytes}) to one tar, as-is."""
    with wds.TarWriter(str(path), encoder=False) as sink:
        for sample in samples:
            sink.write(sample)
    return path


def decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
