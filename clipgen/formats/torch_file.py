"""Reading another project's `torch.save` file as data only, with one-line errors that name it."""

from __future__ import annotations

import pickle
import pickletools
import re
from pathlib import Path
from typing import Any

import torch

from clipgen.errors import require_file


# weights_only's refusal of a pickled object ("GLOBAL module.name"); an old-format file cut inside
# a GLOBAL opcode reads as one too ("GLOBAL collections.Or"), which `_pickle_ends_early` tells apart
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL \S+ was not an allowed global")
# how torch.save's files begin: a zip archive, or (before torch 1.6) a pickle of protocol 2
_CHECKPOINT_MAGIC = (b"PK", b"\x80\x02")


def read_torch_file(path: str | Path, what: str, unsafe_hint: str = "") -> Any:
    """What `torch.save` wrote to `path`, loaded with `weights_only=True` (tensors, containers and
    plain values; no pickled code runs). `what` names the file as the user gave it ("--gpt");
    `unsafe_hint` ends the message for a file that pickles objects (how to re-save it)."""
    path = require_file(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = _UNSAFE_GLOBAL.search(str(err))
        if not unsafe or _pickle_ends_early(path):
            raise ValueError(unreadable(path, what, err)) from None
        raise ValueError(f"{what} {path} holds objects other than tensors, which are not loaded for safety "
                         f"({unsafe.group(0)}){unsafe_hint}") from None  # fmt: skip
    except Exception as err:  # noqa: BLE001
        # torch.load fails on a file that is not its own, or that ends early, with whatever the
        # reader hit first (KeyError, IndexError, struct.error, EOFError, RuntimeError, ...)
        raise ValueError(unreadable(path, what, err)) from None


def _pickle_ends_early(path: Path) -> bool:
    """Whether an old-format (pre-1.6, non-zip) file ends before its object pickle does. It holds
    four pickles (magic number, protocol, system info, the object) before the tensor data; a zip
    archive cut short fails earlier, on its missing central directory."""
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            return False
        f.seek(0)
        try:
            for _ in range(4):
                for _ in pickletools.genops(f):  # reads up to and including the next STOP
                    pass
        except ValueError:  # "pickle exhausted before seeing STOP", "no newline found", ...
            return True
    return False


def unreadable(path: Path, what: str, err: Exception) -> str:
    """One line for a file torch.load cannot read: a checkpoint that ends early (it begins as one)
    or something else."""
    with open(path, "rb") as f:
        begins_as_checkpoint = f.read(2) in _CHECKPOINT_MAGIC
    # weights_only's own errors open with paragraphs of advice; its last line says what it hit
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.startswith("Check the doc")]
    first = (lines[-1] if isinstance(err, pickle.UnpicklingError) else lines[0]) if lines else type(err).__name__
    first = first.split(" Please use")[0]  # not the allowlisting advice: the global is garbage here
    if begins_as_checkpoint:
        return f"{what} {path} cannot be read as a PyTorch checkpoint (truncated or damaged? {first})"
    return f"{what} {path} is not a PyTorch checkpoint ({type(err).__name__}: {first})"


def tensor_dict(value: Any, what: str, path: str | Path) -> dict[str, torch.Tensor]:
    """`value` if it is a state dict (names to tensors); else an error that says what it is."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        raise ValueError(f"{what} {path} does not hold a state dict (names to tensors)")
    return dict(value)
