"""CLIP towers behind one interface: `load_clip(kind, path, **options)`.

Kinds: `chinese-clip` (transformers ChineseCLIPModel + processor from a local directory),
`open_clip` (`arch=` any open_clip architecture, weights from a local file), `taiyi` (IDEA-CCNL
Taiyi-CLIP: the Chinese text tower's directory as the path, `image_dir=` a local OpenAI CLIPModel) and
`toy` (the shapes-zh stand-in that `clipgen train-toy-clip` trains, a local run's model/ directory).
Options common to all: `device`, `dtype`, `batch_size`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from clipgen.encoders.base import ClipEncoder

# kind -> (module, class), imported only when that kind is loaded: each pulls in its own library
_ENCODERS = {
    "chinese-clip": ("clipgen.encoders.chinese_clip", "ChineseClipEncoder"),
    "open_clip": ("clipgen.encoders.open_clip", "OpenClipEncoder"),
    "taiyi": ("clipgen.encoders.taiyi", "TaiyiClipEncoder"),
    "toy": ("clipgen.encoders.toy_clip", "ToyClipEncoder"),
}
CLIP_KINDS = tuple(_ENCODERS)


def load_clip(kind: str, path: str | Path, **options) -> ClipEncoder:
    if kind not in _ENCODERS:
        raise ValueError(_unknown_kind(kind))
    module, name = _ENCODERS[kind]
    return getattr(importlib.import_module(module), name)(path, **options)


def _unknown_kind(kind: str) -> str:
    return f"unknown CLIP kind {kind!r}; choose {', '.join(CLIP_KINDS[:-1])} or {CLIP_KINDS[-1]}"


def load_clip_spec(spec: str, **options) -> ClipEncoder:
    """A CLIP from one string, as configs and command lines name it: `KIND:PATH`, optionally
    followed by `;KEY=VALUE` options for that kind, e.g. `chinese-clip:/weights/cn-clip-vit-b16`,
    `open_clip:/weights/xlmr.bin;arch=xlm-roberta-base-ViT-B-32`,
    `taiyi:/weights/taiyi-text;image_dir=/weights/clip-vit-b32`."""
    kind, path, options = parse_clip_spec(spec, **options)
    try:
        return load_clip(kind, path, **options)
    except TypeError as err:  # an option this kind does not take
        raise ValueError(f"{spec!r}: {err}") from err


def parse_clip_spec(spec: str, **options) -> tuple[str, str, dict]:
    """(kind, path, options) of a CLIP spec (`load_clip_spec`'s), checked without loading
    anything, so that a command which only records the spec refuses a malformed spec or an unknown
    kind at once. Whether the kind takes each option is known only when it loads (each encoder
    passes its options on to the base class)."""
    head, *extras = spec.split(";")
    kind, sep, path = head.partition(":")
    if not sep or not kind or not path:
        raise ValueError(f"a CLIP is named KIND:PATH[;KEY=VALUE...], got {spec!r}")
    for extra in extras:
        key, eq, value = extra.partition("=")
        if not eq or not key:
            raise ValueError(f"CLIP option {extra!r} in {spec!r} is not KEY=VALUE")
        options.setdefault(key.strip(), _option_value(key.strip(), value.strip()))
    if kind.strip() not in CLIP_KINDS:
        raise ValueError(_unknown_kind(kind.strip()))
    return kind.strip(), path.strip(), options


def _option_value(key: str, value: str):
    """Options written in a string take the types the encoders expect."""
    import torch

    if key == "batch_size":
        return int(value)
    if key == "dtype":
        dtype = getattr(torch, value, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype={value} is not a torch dtype (e.g. float32, bfloat16, float16)")
        return dtype
    return value


__all__ = ["CLIP_KINDS", "ClipEncoder", "load_clip", "load_clip_spec", "parse_clip_spec"]
