"""Reading another project's `torch.save` file as data only, with one-line errors that name it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from clipgen.errors import require_file


def read_torch_file(path: str | Path, what: str) -> Any:
    """What `torch.save` wrote to `path`, loaded with `weights_only=True` (tensors, containers and
    plain values; no pickled code runs). `what` names the file as the user gave it ("--gpt")."""
    path = require_file(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{what} {path} holds objects other than tensors, which are not loaded for safety "
                         f"({str(err).splitlines()[0]})") from None  # fmt: skip
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        # a truncated zip archive fails with RuntimeError ("failed finding central directory"),
        # a truncated legacy pickle with EOFError
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{what} {path} cannot be read as a PyTorch checkpoint (truncated or damaged? {first})") from None


def tensor_dict(value: Any, what: str, path: str | Path) -> dict[str, torch.Tensor]:
    """`value` if it is a state dict (names to tensors); else an error that says what it is."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        raise ValueError(f"{what} {path} does not hold a state dict (names to tensors)")
    return dict(value)
