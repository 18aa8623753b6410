"""Writing webdataset shards and the manifest that describes them.

A shard set is a directory of `shard-000000.tar`, `shard-000001.tar`, ... plus `manifest.json`:

    {"format": "clipgen.shards/1", "complete": true, "source": {...},
     "written": 998, "skipped": 2,
     "shards": [{"file": "shard-000000.tar", "samples": 998}],
     "skipped_items": [{"key": "...", "source": "...", "reason": "truncated image"}]}

Each sample is `<key>.<ext>` (the image) and `<key>.json` (labels, caption, provenance).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import webdataset as wds

from clipgen.engine.atomic import atomic_write

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "clipgen.shards/1"
SHARD_PREFIX = "shard-"
SHARD_GLOB = f"{SHARD_PREFIX}[0-9][0-9][0-9][0-9][0-9][0-9].tar"
# USTAR tar names hold 100 bytes (plus a 155-byte directory prefix); a key stays well inside that.
_MAX_KEY_BYTES = 80
_UNSAFE_KEY_CHARS = re.compile(r"[^\w\-]+")  # \w is Unicode-aware: CJK file names survive


def sanitize_key(raw: str) -> str:
    """A webdataset-safe key for `raw` (a relative path, an id...).

    webdataset splits a tar member name at the first dot of its basename into key and extension,
    so a dot inside a key would move part of it into the extension and break the sample. Every
    run of characters other than letters, digits, '_' and '-' becomes '_' (slashes included, so a
    key never looks like a directory); overlong keys are shortened and made unique with a hash.
    """
    key = _UNSAFE_KEY_CHARS.sub("_", raw).strip("_")
    # webdataset treats names like `__x__` as metadata and skips them.
    key = key.lstrip("_") or "sample"
    if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        digest = hashlib.sha1(raw.encode("utf-8")).hexdigest()[:10]
        key = key.encode("utf-8")[: _MAX_KEY_BYTES - 11].decode("utf-8", "ignore") + "_" + digest
    return key


@dataclass(frozen=True)
class SkippedItem:
    key: str
    source: str  # where it came from: a path, "file.tsv:line 7", "x.ffr#12"
    reason: str


class ShardSetWriter:
    """Write samples into `shard-%06d.tar` files of at most `shard_size` samples, then the manifest.

    Wraps `webdataset.ShardWriter`, which opens its first tar in its constructor and so leaves an
    empty tar behind when nothing is ever written; here it is created on the first sample instead,
    so a run that writes nothing leaves no tar at all. Keys are sanitised (see `sanitize_key`) and
    made unique within the set. Use as a context manager: on an exception the shards written so far
    are closed and the manifest is still written, marked `"complete": false`.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        shard_size: int = 1000,
        max_shard_bytes: float = 3e9,
        source: dict[str, Any] | None = None,
        overwrite: bool = False,
    ):
        if shard_size < 1:
            raise ValueError(f"shard size must be at least 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.shard_size = shard_size
        self.max_shard_bytes = max_shard_bytes
        self.source = dict(source or {})
        self._prepare_out_dir(overwrite)
        self._writer: wds.ShardWriter | None = None
        self._samples_per_shard: dict[str, int] = {}
        self._used_keys: set[str] = set()
        self.skipped: list[SkippedItem] = []
        self.written = 0

    def _prepare_out_dir(self, overwrite: bool) -> None:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise NotADirectoryError(f"output path exists and is not a directory: {self.out_dir}")
        old = sorted(self.out_dir.glob(SHARD_GLOB)) if self.out_dir.is_dir() else []
        manifest = self.out_dir / MANIFEST_NAME
        if manifest.exists():
            old.append(manifest)
        if old and not overwrite:
            raise FileExistsError(
                f"{self.out_dir} already holds a shard set ({old[0].name}...); "
                "choose another output directory or pass --overwrite"
            )
        for path in old:  # only files this writer would create; anything else is left alone
            path.unlink()
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def _open(self) -> wds.ShardWriter:
        # ShardWriter %-formats its pattern: escape any '%' that is part of the directory name.
        pattern = str(self.out_dir / SHARD_PREFIX).replace("%", "%%") + "%06d.tar"
        # mtime fixed so that the same samples always give byte-identical shards.
        return wds.ShardWriter(pattern, maxcount=self.shard_size, maxsize=self.max_shard_bytes, verbose=0, mtime=0)

    def _unique_key(self, raw_key: str) -> str:
        # Distinct inputs can sanitise to one key ("a.b.jpg" and "a_b.jpg"); number the later ones.
        key = candidate = sanitize_key(raw_key)
        number = 1
        while candidate in self._used_keys:
            number += 1
            candidate = f"{key}-{number}"
        self._used_keys.add(candidate)
        return candidate

    def add(self, raw_key: str, image_ext: str, image: bytes, meta: dict[str, Any] | None = None) -> str:
        """Write one sample (image bytes stored as-is under `image_ext`); return the key used."""
        if self._writer is None:
            self._writer = self._open()
        key = self._unique_key(raw_key)
        sample = {"__key__": key, image_ext.lower(): bytes(image)}
        if meta:
            sample["json"] = json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")
        self._writer.write(sample)
        name = Path(self._writer.fname).name
        self._samples_per_shard[name] = self._samples_per_shard.get(name, 0) + 1
        self.written += 1
        return key

    def skip(self, key: str, source: str, reason: str) -> None:
        """Record an input item that could not be written, for the manifest and the summary."""
        self.skipped.append(SkippedItem(key, source, reason))

    def manifest(self, complete: bool = True, error: str | None = None) -> dict[str, Any]:
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "complete": complete,
            "source": self.source,
            "written": self.written,
            "skipped": len(self.skipped),
            "shards": [{"file": name, "samples": n} for name, n in sorted(self._samples_per_shard.items())],
            "skipped_items": [asdict(item) for item in self.skipped],
        }
        if error:
            manifest["error"] = error
        return manifest

    def close(self, complete: bool = True, error: str | None = None) -> dict[str, Any]:
        """Finish the last shard and write `manifest.json` (atomically); return the manifest."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        manifest = self.manifest(complete, error)
        with atomic_write(self.out_dir / MANIFEST_NAME) as tmp:
            tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return manifest

    def __enter__(self) -> ShardSetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.close(complete=False, error=f"{exc_type.__name__}: {exc}")


def read_manifest(shard_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a shard set, or FileNotFoundError naming the directory."""
    path = Path(shard_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {shard_dir}")
    return json.loads(path.read_text(encoding="utf-8"))
