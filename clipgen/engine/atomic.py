"""Atomic file writes: a reader (or a resumed job) sees the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

TEMP_SUFFIX = ".tmp"



@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path`.

    The temporary file lives in the same directory so the final rename stays on one
    filesystem, where POSIX makes it atomic. On error the temporary file is removed and any
    existing `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_leftover_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files `atomic_write` left under `directory` when its process was
    killed mid-write (kill -9 skips the clean-up), and return them. Only for a directory no
    live process writes to, e.g. a run directory whose lock this process holds."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for leftover in sorted(directory.rglob(f".*{TEMP_SUFFIX}")):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def check_or_record_settings(path: str | Path, settings: dict, record: bool = True) -> None:
    """For work that resumes what it finds in a directory: the first run records its settings in
    `path` (atomically, when `record`); a later run with other settings is refused, so work done
    with other settings is never mixed in."""
    import json

    path = Path(path)
    settings = json.loads(json.dumps(settings))  # the form it takes on disk (tuples become lists)
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved != settings:
            differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            raise ValueError(
                f"{path.parent} holds work made with other settings (they differ in: {', '.join(differ)}); "
                "choose another output directory, or delete it to start over"
            )
    elif record:
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(settings, indent=2, ensure_ascii=False), encoding="utf-8")
