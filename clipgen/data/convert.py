"""`clipgen convert`: a folder, TSV or FFRecord source -> webdataset shards + manifest.json.

Every image is fully decoded once to prove it is usable, then stored with its ORIGINAL bytes
(JPEG, PNG and WebP; nothing is re-compressed, so nothing is lost; a 16-bit PNG stays 16-bit).
Other formats (BMP, GIF, TIFF) are re-encoded losslessly to PNG and the json says so. Items that
cannot be read or decoded are skipped and listed in the manifest with their reason; they never
stop the conversion.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from clipgen.data.decode import PNG_MODES, BadImageError, probe_image, reencode_png
from clipgen.data.shards import MANIFEST_NAME, ShardSetWriter
from clipgen.data.sources import SOURCES, SourceFailure

_SUMMARY_MAX_SKIPS = 20


def storable_image(data: bytes) -> tuple[str, bytes, dict[str, Any]]:
    """(extension, bytes to store, extra json) for image bytes; raises BadImageError. The json of
    a re-encoded image says from what, and what of it was not kept: the frames after the first
    (an animated GIF, a multi-page TIFF), a mode PNG cannot hold (CMYK and float are stored as
    8-bit RGB, 32-bit integer as 16-bit grey when its values fit)."""
    probe = probe_image(data)
    if probe.ext is not None:
        return probe.ext, data, {}
    extra: dict[str, Any] = {"reencoded_from": probe.format}
    if probe.frames > 1:
        extra["first_frame_of"] = probe.frames
    if probe.mode not in PNG_MODES:
        extra["converted_from_mode"] = probe.mode
    return "png", reencode_png(data), extra


def convert_source(kind: str, src: str | os.PathLike, out_dir: str | os.PathLike, *, shard_size: int = 1000,
                   trust_pickle: bool = False, overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Convert `src` (of `kind` folder / tsv / ffrecord) into shards in `out_dir`; return the manifest.

    Raises FileNotFoundError / NotADirectoryError when `src` is missing, FileExistsError when
    `out_dir` already holds shards (unless `overwrite`). A manifest with `written == 0` means
    nothing in `src` was readable; the caller decides whether that is an error.
    """
    if kind not in SOURCES:
        raise ValueError(f"unknown source kind {kind!r}; choose one of {', '.join(SOURCES)}")
    options = {"trust_pickle": trust_pickle} if kind == "ffrecord" else {}
    items = SOURCES[kind](src, **options)  # checks that src exists before any output is made
    source_info = {"kind": kind, "path": str(Path(src).resolve())}
    writer = ShardSetWriter(out_dir, shard_size=shard_size, source=source_info, overwrite=overwrite)
    with writer:
        for item in tqdm(items, desc=f"converting {kind}", unit=" items", disable=not progress):
            if isinstance(item, SourceFailure):
                writer.skip(item.key, item.origin, item.reason)
                continue
            try:
                ext, data, extra = storable_image(item.data)
            except BadImageError as err:
                writer.skip(item.key, item.origin, str(err))
                continue
            writer.add(item.key, ext, data, {**item.meta, **extra})
    return writer.manifest()


def format_summary(manifest: dict[str, Any], out_dir: str | os.PathLike) -> str:
    """A few lines for a person: what was written where, and what was skipped and why."""
    shards = manifest["shards"]
    lines = [
        f"wrote {manifest['written']} image(s) to {len(shards)} shard(s) in {out_dir}; "
        f"skipped {manifest['skipped']} (details in {Path(out_dir) / MANIFEST_NAME})"
    ]
    skipped = manifest["skipped_items"]
    for item in skipped[:_SUMMARY_MAX_SKIPS]:
        lines.append(f"  skipped {item['source']}: {item['reason']}")
    if len(skipped) > _SUMMARY_MAX_SKIPS:
        lines.append(f"  ... and {len(skipped) - _SUMMARY_MAX_SKIPS} more")
    return "\n".join(lines)
