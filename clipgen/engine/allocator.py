"""glibc's malloc told to keep freed memory for the next training step instead of handing it back.

torch allocates its CPU tensors with plain malloc. With glibc's defaults, chunks above a moving
threshold (128 KiB at first) come from their own mmap and go back to the kernel when freed, and
free memory at the top of the heap is trimmed past twice that threshold; every step then asks the
kernel again for the pages of its activations and gradients, which it faults in one 4 KiB page at
a time, zero-filled. The shapes32 condition transformer's step took ~9,000 such page faults and
the VQGAN's ~11,000; the README's demo as a whole 52 million, 110 s of system time
(BENCHMARKS.md, "Allocator"). A fixed mmap threshold at glibc's largest (32 MiB) and a trim
threshold far above any step's working set make later steps reuse the pages of the earlier ones.

The price: memory freed below the threshold stays with the process (its resident size stays at
its peak) rather than going back to the system. PyTorch's own CPU launcher
(`python -m torch.backends.xeon.run_cpu`) preloads jemalloc or tcmalloc for the same reason, where
they are installed; this needs neither and changes nothing where malloc is not glibc's, where
another allocator is preloaded, or where GLIBC_TUNABLES already sets malloc's thresholds.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc refuses more than HEAP_MAX_SIZE / 2 (32 MiB on 64-bit)
TRIM_THRESHOLD = 1 << 30

_kept = False


def keep_freed_memory() -> bool:
    """Set glibc malloc's mmap and trim thresholds for this process (once). True when they are set
    here or were already; False where nothing was changed (not glibc, another allocator preloaded,
    the user's own GLIBC_TUNABLES for malloc)."""
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux") or _user_chose_allocator():
        return False
    libc = ctypes.CDLL(None)
    # gnu_get_libc_version is glibc's own: musl and others have a mallopt that ignores its arguments
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # both or neither: setting either one stops glibc adjusting the other, which then stays at its
    # small default (the trim threshold alone tripled the condition transformer's page faults)
    _kept = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _kept


def _user_chose_allocator() -> bool:
    preloaded = os.environ.get("LD_PRELOAD", "")
    return "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "") or any(
        name in preloaded for name in ("jemalloc", "tcmalloc", "mimalloc")
    )
