"""Iterators over the inputs `clipgen convert` understands.

Each source yields, in a deterministic order, either a `SourceImage` (raw image bytes that still
have to pass a full decode, plus json metadata) or a `SourceFailure` (an item that could not even
be read, with a reason). Sources never raise for one bad item; they raise `FileNotFoundError` /
`ValueError` up front when the source as a whole is missing or of the wrong kind.

- folder:   every .jpg/.jpeg/.png/.webp/.bmp/.gif/.tif/.tiff below a directory (recursive, sorted
            by relative path); key = the relative path without its extension. Every other file is
            a failure, "not an image file extension", so that nothing is left out unsaid, except a
            sidecar (a file named like an image: `a.txt` or `a.jpg.json` beside `a.jpg`, as
            img2dataset and photo tools write them; not read), hidden files and folders (`.git`,
            `.DS_Store`) and the Windows folder files Thumbs.db and desktop.ini.
- tsv:      EasyNLP / MUGE text-image TSV, one `idx \\t text \\t imgbase64` per line (a file, or a
            directory of *.tsv); the text is kept as `caption`. Two-column `idx \\t imgbase64`
            lines (MUGE's image-only files) are accepted too.
- ffrecord: HFAiLab FFRecord files (a file, or a directory of *.ffr). Each payload is taken as
            raw image bytes. HFAiLab's own examples store `pickle.dumps((PIL image, label))`
            instead; unpickling runs arbitrary code from the file, so a pickled payload is refused
            with a clear reason unless `trust_pickle=True` (`--trust-pickle`), which then looks for
            the image in the unpickled object (see `image_from_unpickled`).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import pickle
import pickletools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from clipgen.data.decode import IMAGE_EXTENSIONS
from clipgen.data.ffrecord import FFRecordError, FFRecordReader

FOLDER_IMAGE_SUFFIXES = frozenset("." + ext for ext in IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class SourceImage:
    key: str  # raw key; the shard writer sanitises it
    origin: str  # where a person finds it: a relative path, "x.tsv:12", "x.ffr#3"
    data: bytes
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceFailure:
    key: str
    origin: str
    reason: str
    caption: str | None = None  # a TSV line's text, when only its image was bad


SourceItem = Union[SourceImage, SourceFailure]


def _source_files(src: str | os.PathLike, suffix: str, what: str) -> list[Path]:
    """`src` itself when it is a file, else the sorted `*suffix` files directly inside it."""
    path = Path(src)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == suffix)
        if not files:
            raise FileNotFoundError(f"no {suffix} files in {path}")
        return files
    raise FileNotFoundError(f"{what} not found: {path}")


# ---------------------------------------------------------------- folder


_NOT_REPORTED = frozenset({"thumbs.db", "desktop.ini"})  # Windows folder files, lower case


def _files_below(root: Path) -> tuple[list[str], list[str]]:
    """(image files, files that are neither images nor sidecars) below `root`: relative POSIX
    paths, each list sorted. os.walk does not follow symlinked directories, so a link loop cannot
    make the walk endless. Images in hidden folders are found as before; only the report of other
    files leaves hidden ones out (a `.git` folder alone would list thousands)."""
    images, others = [], []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            rel = Path(dirpath, name).relative_to(root)
            if rel.suffix.lower() in FOLDER_IMAGE_SUFFIXES:
                images.append(rel.as_posix())
            elif not any(part.startswith(".") for part in rel.parts) and name.lower() not in _NOT_REPORTED:
                others.append(rel.as_posix())
    # a sidecar without its last suffix is an image's key (a.txt) or its whole path (a.jpg.json)
    named_like_an_image = {_without_suffix(rel) for rel in images} | set(images)
    strays = [rel for rel in others if _without_suffix(rel) not in named_like_an_image]
    return sorted(images), sorted(strays)


def _without_suffix(rel: str) -> str:
    return rel[: -len(Path(rel).suffix)] if Path(rel).suffix else rel


def iter_folder(root: str | os.PathLike) -> Iterator[SourceItem]:
    """Every image file below `root`, in order of relative path; unreadable files, and files that
    are not images by extension (see the module docstring), come back as failures."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"source folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"source is not a folder: {root}")
    return _folder_items(root, *_files_below(root))


def _folder_items(root: Path, images: list[str], strays: list[str]) -> Iterator[SourceItem]:
    stray_set = set(strays)
    for rel in sorted(images + strays):
        key = _without_suffix(rel)
        if rel in stray_set:
            suffix = Path(rel).suffix
            yield SourceFailure(key, rel, f"not an image file extension ({suffix or 'none'})")
            continue
        try:
            data = (root / rel).read_bytes()
        except OSError as err:
            yield SourceFailure(key, rel, f"cannot read file: {err.strerror or err}")
            continue
        yield SourceImage(key, rel, data, {"source": rel})


# ---------------------------------------------------------------- TSV


def decode_base64_image(text: str) -> bytes:
    """Standard or URL-safe base64 (Chinese-CLIP writes the latter), padding optional."""
    text = text.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    return base64.b64decode(text, validate=True)


def iter_tsv(src: str | os.PathLike) -> Iterator[SourceItem]:
    """Every line of a TSV file (or of each *.tsv in a directory); blank lines are ignored."""
    files = _source_files(src, ".tsv", "TSV source")
    return _tsv_items(files, prefix_keys=len(files) > 1)


def _parse_tsv_line(line: str) -> tuple[str, str | None, str]:
    fields = line.split("\t")
    if len(fields) == 3:
        return fields[0], fields[1], fields[2]
    if len(fields) == 2:
        return fields[0], None, fields[1]
    raise ValueError(f"expected 3 tab-separated fields (idx, text, imgbase64), got {len(fields)}")


def _tsv_items(files: list[Path], prefix_keys: bool) -> Iterator[SourceItem]:
    for file in files:
        # Keys of different files may repeat (train.tsv and valid.tsv both start at 0).
        prefix = f"{file.stem}/" if prefix_keys else ""
        with open(file, "rb") as lines:  # bytes: one badly encoded line must not stop the file
            for line_number, raw in enumerate(lines, start=1):
                origin = f"{file.name}:{line_number}"
                if not raw.strip():
                    continue
                caption = None
                try:
                    idx, caption, encoded = _parse_tsv_line(raw.decode("utf-8").rstrip("\r\n"))
                    data = decode_base64_image(encoded)
                except UnicodeDecodeError:
                    yield SourceFailure(f"{prefix}line{line_number}", origin, "line is not valid UTF-8")
                    continue
                except ValueError as err:  # binascii.Error is a ValueError
                    key = f"{prefix}line{line_number}"
                    reason = f"bad base64 image: {err}" if isinstance(err, binascii.Error) else str(err)
                    yield SourceFailure(key, origin, reason, caption)
                    continue
                meta = {"source": origin, "idx": idx.strip()}
                if caption is not None:
                    meta["caption"] = caption.strip()
                yield SourceImage(prefix + (idx.strip() or f"line{line_number}"), origin, data, meta)


# ---------------------------------------------------------------- FFRecord


class PayloadError(ValueError):
    """An FFRecord payload that holds no usable image (or one we refuse to open)."""


def looks_like_pickle(data: bytes) -> bool:
    """True when `data` parses as one complete pickle. pickletools only reads the opcodes; it
    never imports or calls anything, so this is safe on untrusted bytes."""
    last_opcode, last_pos = None, -1
    try:
        for opcode, _arg, pos in pickletools.genops(data):
            last_opcode, last_pos = opcode, pos
    except Exception:  # noqa: BLE001 - any parse failure means "not a pickle"
        return False
    return last_opcode is not None and last_opcode.name == "STOP" and last_pos == len(data) - 1


def _png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


_IMAGE_FIELD_NAMES = ("image", "img", "jpg", "jpeg", "png", "webp", "bytes", "data")
_JSON_SCALARS = (str, int, float, bool)


def _as_image_bytes(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, Image.Image):
        # A pickled PIL image keeps only pixels, not its file; PNG stores those losslessly.
        return _png_bytes(value)
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim in (2, 3):
        return _png_bytes(Image.fromarray(value))
    return None


def image_from_unpickled(obj: Any) -> tuple[bytes, dict[str, Any]]:
    """Find the image in an unpickled sample and keep simple side values as metadata.

    Understood shapes: an image itself (bytes, PIL image, uint8 array); a tuple/list such as
    HFAiLab's `(PIL image, label)` (the first image-like element is the image, a scalar after it is
    `label`); a dict with the image under image/img/jpg/png/webp/bytes/data (scalar entries are
    kept as metadata).
    """
    found = _as_image_bytes(obj)
    if found is not None:
        return found, {}
    if isinstance(obj, (tuple, list)):
        images = [b for b in map(_as_image_bytes, obj) if b is not None]
        scalars = [v for v in obj if isinstance(v, _JSON_SCALARS)]
        if images:
            return images[0], ({"label": scalars[0]} if len(scalars) == 1 else {})
    if isinstance(obj, dict):
        names = [k for k in _IMAGE_FIELD_NAMES if k in obj] + [k for k in obj if k not in _IMAGE_FIELD_NAMES]
        for name in names:
            image = _as_image_bytes(obj[name])
            if image is not None:
                meta = {str(k): v for k, v in obj.items() if k != name and isinstance(v, _JSON_SCALARS)}
                return image, meta
    raise PayloadError(f"unpickled a {type(obj).__name__} but found no image in it")


def image_from_payload(data: bytes, trust_pickle: bool) -> tuple[bytes, dict[str, Any]]:
    """Image bytes and extra metadata from one FFRecord payload (see the module docstring)."""
    if not looks_like_pickle(data):
        return data, {}
    if not trust_pickle:
        raise PayloadError(
            "payload is a Python pickle; refusing to unpickle it because unpickling untrusted data "
            "can run arbitrary code (pass --trust-pickle if you trust this file)"
        )
    try:
        obj = pickle.loads(data)  # noqa: S301 - explicitly allowed by the user (--trust-pickle)
    except Exception as err:  # noqa: BLE001 - a broken pickle is bad data, not a crash
        raise PayloadError(f"cannot unpickle payload: {type(err).__name__}: {err}") from None
    return image_from_unpickled(obj)


def iter_ffrecord(src: str | os.PathLike, *, trust_pickle: bool = False) -> Iterator[SourceItem]:
    """Every sample of an FFRecord file (or of each *.ffr in a directory). A sample whose CRC
    fails, and a whole file whose header is broken, come back as failures naming the file."""
    files = _source_files(src, ".ffr", "FFRecord source")
    return _ffrecord_items(files, trust_pickle)


def _ffrecord_items(files: list[Path], trust_pickle: bool) -> Iterator[SourceItem]:
    for file in files:
        try:
            reader = FFRecordReader(file)
        except (FFRecordError, OSError) as err:
            yield SourceFailure(file.stem, str(file), str(err))
            continue
        with reader:
            for sample in reader.iter_samples():
                key, origin = f"{file.stem}/{sample.index:08d}", f"{file.name}#{sample.index}"
                if sample.error is not None:
                    yield SourceFailure(key, origin, sample.error)
                    continue
                try:
                    data, meta = image_from_payload(sample.data, trust_pickle)
                except PayloadError as err:
                    yield SourceFailure(key, origin, str(err))
                    continue
                yield SourceImage(key, origin, data, {**meta, "source": origin})


SOURCES = {"folder": iter_folder, "tsv": iter_tsv, "ffrecord": iter_ffrecord}
