"""Resumable training checkpoints: written atomically, read without unpickling code.

A checkpoint is a plain dict of tensors, numbers, strings and lists (model, optimisers, EMA,
step, data position, RNG states), so `torch.load(weights_only=True)` reads it: a file from an
untrusted source cannot run code on load. Files are `step_{N:08d}.pt` in the run's
`checkpoints/` directory; the newest ones are kept.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipgen.engine.atomic import atomic_write

_NAME = re.compile(r"^step_(\d{8})\.pt$")


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


def save_checkpoint(directory: str | Path, step: int, payload: dict[str, Any], keep_last: int = 2) -> Path:
    path = checkpoint_path(directory, step)
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    if keep_last > 0:
        for _, old in list_checkpoints(directory)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, never half-load
        raise ValueError(f"{path} is not a readable clipgen checkpoint: {err}") from err


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None
