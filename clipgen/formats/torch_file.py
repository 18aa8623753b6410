"""Reading another project's `torch.save` file as data only, with one-line errors that name it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clipgen.engine.unreadable import unsafe_global, why_unreadable
from clipgen.errors import require_file


def read_torch_file(path: str | Path, what: str, unsafe_hint: str = "") -> Any:
    """What `torch.save` wrote to `path`, loaded with `weights_only=True` (tensors, containers and
    plain values; no pickled code runs). `what` names the file as the user gave it ("--gpt");
    `unsafe_hint` ends the message for a file that pickles objects (how to re-save it)."""
    path = require_file(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        # torch.load fails on a file that is not its own, or that ends early, with whatever the
        # reader hit first (KeyError, IndexError, struct.error, EOFError, RuntimeError, ...)
        refused = unsafe_global(path, err)
        if refused:
            raise ValueError(f"{what} {path} holds objects other than tensors, which are not loaded for safety "
                             f"(GLOBAL {refused}){unsafe_hint}") from None  # fmt: skip
        raise ValueError(f"{what} {path} cannot be read: {why_unreadable(path, err)}") from None


def tensor_dict(value: Any, what: str, path: str | Path) -> dict[str, torch.Tensor]:
    """`value` if it is a state dict (names to tensors); else an error that says what it is."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        raise ValueError(f"{what} {path} does not hold a state dict (names to tensors)")
    return dict(value)
