"""One training process per run directory.

Two jobs started on one run directory (a requeued job beside a live one, a second `--resume`
typed by hand) would overwrite each other's checkpoints and interleave `metrics.jsonl`. Rank 0
holds an exclusive `flock` on `RUN_DIR/.lock` from set-up to export. The kernel drops the lock
when its holder dies, however it dies (kill -9, OOM, a lost node on a filesystem whose locks
expire), so a stale lock never needs a person to delete a file: the file stays, the lock does not.
The file's text (pid, host, start time) only tells the refused job who holds it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from clipgen.errors import ClearError

LOCK_NAME = ".lock"


class RunDirBusyError(ClearError):
    """Another live process trains in this run directory."""


class RunDirLock:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self.held:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "an unknown process"
            os.close(fd)
            raise RunDirBusyError(
                f"{self.path.parent} is in use by another training process ({holder}); wait for it to "
                "finish or stop it, or choose another run.out_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


# The locks this process holds, by run directory: set-up takes one, the end of training drops it,
# and taking it again in the same process (a test resuming in-process) is not a conflict.
_HELD: dict[Path, RunDirLock] = {}


def lock_run_dir(run_dir: str | Path) -> None:
    key = Path(run_dir).resolve()
    if key not in _HELD:
        lock = RunDirLock(run_dir)
        lock.acquire()
        _HELD[key] = lock


def unlock_run_dir(run_dir: str | Path) -> None:
    lock = _HELD.pop(Path(run_dir).resolve(), None)
    if lock is not None:
        lock.release()
