"""CLIP towers behind one interface: `load_clip(kind, path, **options)`.

Kinds: `chinese-clip` (transformers ChineseCLIPModel + processor from a local directory) and
`open_clip` (`arch=` any open_clip architecture, weights from a local file), `toy` (the shapes-zh
stand-in that `clipgen train-toy-clip` trains, a local run's model/ directory). Options common to
all: `device`, `dtype`, `batch_size`.
"""

from __future__ import annotations

from pathlib import Path

from clipgen.encoders.base import ClipEncoder


def load_clip(kind: str, path: str | Path, **options) -> ClipEncoder:
    if kind == "chinese-clip":
        from clipgen.encoders.chinese_clip import ChineseClipEncoder

        return ChineseClipEncoder(path, **options)
    if kind == "toy":
        from clipgen.encoders.toy_clip import ToyClipEncoder

        return ToyClipEncoder(path, **options)
    if kind == "open_clip":
        from clipgen.encoders.open_clip import OpenClipEncoder

        return OpenClipEncoder(path, **options)
    raise ValueError(f"unknown CLIP kind {kind!r}; choose chinese-clip, open_clip or toy")


__all__ = ["ClipEncoder", "load_clip"]
