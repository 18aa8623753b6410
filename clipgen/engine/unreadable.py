"""Why `torch.load(weights_only=True)` could not read a file, in a few words.

One classification for every reader of torch files (training checkpoints, LPIPS weights, other
projects' checkpoints), never torch's advice to load again with weights_only=False.
"""

from __future__ import annotations

import pickle
import pickletools
import re
from pathlib import Path

# weights_only's refusal of a pickled object ("GLOBAL module.name"); an old-format file cut inside
# a GLOBAL opcode reads as one too ("GLOBAL collections.Or"), which `_pickle_ends_early` tells apart
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+) was not an allowed global")
# how torch.save's files begin: a zip archive, or (before torch 1.6) a pickle of protocol 2
_CHECKPOINT_MAGIC = (b"PK", b"\x80\x02")


def unsafe_global(path: Path, err: BaseException) -> str | None:
    """The pickled object ("module.name") that safe loading refused, when that is why `path` did
    not load; None for any other failure, a file cut short inside a GLOBAL opcode included."""
    found = _UNSAFE_GLOBAL.search(str(err)) if isinstance(err, pickle.UnpicklingError) else None
    return found.group(1) if found and not _pickle_ends_early(path) else None


def why_unreadable(path: Path, err: BaseException) -> str:
    """A short reason torch.load failed on `path`: empty, pickled objects refused, a checkpoint cut
    short or damaged (it begins as one), or not a PyTorch checkpoint at all."""
    if not path.is_file():
        return "no such file" if not path.exists() else "not a file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    refused = unsafe_global(path, err)
    if refused:
        return f"it holds Python objects ({refused}) that safe loading refuses to run: not a file of plain tensors"
    with open(path, "rb") as f:
        begins_as_checkpoint = f.read(2) in _CHECKPOINT_MAGIC
    if begins_as_checkpoint:
        return f"truncated or damaged ({_last_word(err)})"
    return f"not a PyTorch checkpoint ({type(err).__name__}: {_last_word(err)})"


def _last_word(err: BaseException) -> str:
    """torch's own line for what it hit: weights_only's errors open with paragraphs of advice and
    end with it; other errors say it first."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.startswith("Check the doc")]
    if not lines:
        return type(err).__name__
    line = lines[-1] if isinstance(err, pickle.UnpicklingError) else lines[0]
    return line.split(" Please use")[0][:200]  # not the allowlisting advice: the global is garbage here


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
