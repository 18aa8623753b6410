"""glibc's malloc told to keep freed memory for the next training step instead of handing it back.

torch allocates its CPU tensors with plain malloc. With glibc's defaults, chunks above a moving
threshold (128 KiB at first) come from their own mmap and go back to the kernel when freed, and
free memory at the top of the heap is trimmed past twice that threshold; every step then asks the
kernel again for the pages of its activations and gradients, which it faults in one 4 KiB page at
a time, zero-filled. The shapes32 condition transformer's step took 6,000-7,500 such page faults
and the VQGAN's 9,000-9,500; the README's demo as a whole 54.6 million, 111 s of system time
(BENCHMARKS.md, "Allocator"). A fixed mmap threshold at glibc's largest (32 MiB) and a trim
threshold far above any step's working set make later steps reuse the pages of the earlier ones.

The price: memory freed below the threshold stays with the process (its resident size stays at
its peak, also in a long-running `clipgen serve`) rather than going back to the system. PyTorch's own CPU launcher
(`python -m torch.backends.xeon.run_cpu`) preloads jemalloc or tcmalloc for the same reason, where
they are installed; this needs neither and changes nothing where malloc is not glibc's, where
another allocator is preloaded, or where the environment already sets malloc's thresholds.
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
    thresholds the environment sets)."""
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux") or _user_chose_allocator():
        return False
    try:
        libc = ctypes.CDLL(None)  # the running program's symbols, the C library's among them
    except OSError:  # e.g. a statically linked interpreter
        return False
    # gnu_get_libc_version is glibc's own: another C library's mallopt (a compatibility stub, if
    # any) may not mean the same parameters
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # both or neither: setting either one stops glibc adjusting the other, which then stays at its
    # small default (tried: the trim threshold alone gave the condition transformer more faults)
    _kept = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _kept


# what a user sets to choose these thresholds: glibc's tunables, and its older variables
USER_THRESHOLDS = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold", "glibc.malloc.top_pad", "glibc.malloc.mmap_max")
USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def _user_chose_allocator() -> bool:
    tunables, preloaded = os.environ.get("GLIBC_TUNABLES", ""), os.environ.get("LD_PRELOAD", "")
    return (
        any(name in tunables for name in USER_THRESHOLDS)
        or any(name in os.environ for name in USER_VARIABLES)
        or any(name in preloaded for name in ("jemalloc", "tcmalloc", "mimalloc"))
    )
