"""Every bad input is one clear line: `PROG: error: MESSAGE` on stderr and exit status 2, as
argparse does for a bad flag. A genuine bug keeps its traceback.

What counts as the user's input: `ConfigError` and every other `ValueError` (clipgen raises
ValueError only for values it was given: config values, flags, files' contents, including
UnicodeDecodeError and JSONDecodeError), and the OS errors that name a path the user gave.
A `ClearError` is not the input's fault but needs no traceback either (a run directory another
process trains in, a disk that filled up during a save).
Anything else (a RuntimeError, a KeyError, ...) is a bug and propagates untouched.
`CLIPGEN_TRACEBACK=1` shows the traceback of an input error too, to see where it was raised.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator


class ClearError(Exception):
    """A failure that is not a bug and whose message says all a user needs (a run directory in use,
    a full disk): reported in one line like an input error."""


INPUT_ERRORS = (ValueError, ClearError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                PermissionError)  # fmt: skip


class InputErrorExit(SystemExit):
    """SystemExit(2) after the line was printed; str() is that line, for callers that catch it."""

    def __init__(self, line: str):
        super().__init__(2)
        self.line = line

    def __str__(self) -> str:
        return self.line


def one_line(err: BaseException) -> str:
    """The error's message on one line (a multi-line message is joined, never cut)."""
    return " ".join(str(err).split()) or type(err).__name__


@contextlib.contextmanager
def input_errors_exit(prog: str) -> Iterator[None]:
    """Inside this block an input error (INPUT_ERRORS) prints `prog: error: message` on stderr and
    raises SystemExit(2), as argparse's parser.error does; every other exception passes through."""
    try:
        yield
    except INPUT_ERRORS as err:
        if os.environ.get("CLIPGEN_TRACEBACK", "") not in ("", "0"):
            raise
        line = f"{prog}: error: {one_line(err)}"
        print(line, file=sys.stderr, flush=True)
        raise InputErrorExit(line) from None


def require_file(path: str | Path, what: str) -> Path:
    """`path` if it is a file; else FileNotFoundError naming it as the user did (`what`: "--lin")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: {'a directory, not a file' if path.is_dir() else 'no such file'}")
    return path


def read_text_file(path: str | Path, what: str) -> str:
    """A UTF-8 text file the user named, with errors that say which file and what is wrong with it."""
    data = require_file(path, what).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})") from None
