"""Resumable training checkpoints: written atomically, read without unpickling code.

A checkpoint is a plain dict of tensors, numbers, strings and lists (model, optimisers, EMA,
step, data position, RNG states), so `torch.load(weights_only=True)` reads it: a file from an
untrusted source cannot run code on load. Files are `step_{N:08d}.pt` in the run's
`checkpoints/` directory; the newest ones are kept.
"""

from __future__ import annotations

import errno
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipgen.engine.atomic import atomic_write
from clipgen.engine.unreadable import why_unreadable
from clipgen.errors import ClearError

log = logging.getLogger("clipgen.train")

_NAME = re.compile(r"^step_(\d{8})\.pt$")
_NEARLY_FULL_BYTES = 16 * 2**20


def capture_rng_state() -> dict[str, Any]:
    _, mt_keys, mt_pos, has_gauss, cached = np.random.get_state()
    _, py_words, py_gauss = random.getstate()
    state = {
        "python": list(py_words),  # Mersenne Twister words plus position
        "python_gauss": py_gauss,
        "numpy": torch.from_numpy(np.asarray(mt_keys, dtype=np.int64)),
        "numpy_pos": int(mt_pos),
        "numpy_gauss": [int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    has_gauss, cached = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], int(has_gauss), cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


class CheckpointWriteError(ClearError, OSError):
    """A checkpoint could not be written (e.g. the disk is full); the earlier ones are untouched."""


def _disk_full(err: BaseException, directory: Path) -> bool:
    # the errno where there is one; else (a RuntimeError from torch's zip writer) the free space
    chain: BaseException | None = err
    while chain is not None:
        if isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        chain = chain.__cause__ or chain.__context__
    try:
        return shutil.disk_usage(directory).free < _NEARLY_FULL_BYTES
    except OSError:
        return False


def save_checkpoint(directory: str | Path, step: int, payload: dict[str, Any], keep_last: int = 2) -> Path:
    path = checkpoint_path(directory, step)
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as handle:
            # through a Python file: a failed write then raises OSError with its errno (ENOSPC),
            # where torch writing to a path itself says only "unexpected pos ..."
            torch.save(payload, handle)
    except (OSError, RuntimeError) as err:
        kept = ", ".join(p.name for _, p in list_checkpoints(directory)) or "none yet"
        if _disk_full(err, path.parent):
            raise CheckpointWriteError(
                f"the disk is full: cannot write {path} (free on that filesystem: "
                f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB); the previous checkpoints are intact "
                f"({kept}): free some space and resume"
            ) from None
        raise CheckpointWriteError(f"cannot write {path}: {_first_line(err)}; the previous checkpoints are intact ({kept})") from None
    if keep_last > 0:
        for _, old in list_checkpoints(directory)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


class UnreadableCheckpointError(ValueError):
    """A checkpoint file that cannot be loaded (truncated, empty, foreign, unsafe)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, never half-load
        raise UnreadableCheckpointError(f"{path} is not a readable checkpoint: {why_unreadable(path, err)}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise UnreadableCheckpointError(f"{path} is not a readable checkpoint: it holds no training state")
    return state


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def load_latest_readable(directory: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads, with its state; None when there is none at all.

    An unreadable newer one (a disk that lost the file's tail, a file copied in by hand) is
    skipped with a warning that says why, so a requeued job falls back instead of failing forever.
    """
    skipped = []
    for _, path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path)
        except UnreadableCheckpointError as err:
            log.warning("skipping %s", err)
            skipped.append(str(err))
    if skipped:
        raise UnreadableCheckpointError(f"no readable checkpoint in {directory}: " + "; ".join(skipped))
    return None
