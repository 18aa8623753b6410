"""glibc malloc keeps freed memory for the next step (engine/allocator.py), and stays out of the way
of an allocator the user chose."""

import json
import platform
import subprocess
import sys

import pytest

from clipgen.engine import allocator

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# A step's worth of mid-sized tensors, allocated and freed 20 times: the page faults it takes after
# a first round, in a fresh interpreter (the thresholds are per process and cannot be unset).
# "handed back" fixes glibc's thresholds at their starting values (128 KiB), so that every free
# returns the memory: what the defaults do to a training step, but without their dynamic
# adjustment, which made the plain defaults' count depend on the heap's layout (2,000 to 190,000).
CHURN = """
import ctypes, json, resource, sys, torch
from clipgen.engine import allocator
if sys.argv[1] == "kept":
    kept = allocator.keep_freed_memory()
else:
    mallopt = ctypes.CDLL(None).mallopt
    kept = not (mallopt(allocator.M_MMAP_THRESHOLD, 128 << 10) and mallopt(allocator.M_TRIM_THRESHOLD, 128 << 10))
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():
    tensors = [torch.ones(1 << 18) for _ in range(40)]  # 40 of 1 MiB
    del tensors
step()
before = faults()
for _ in range(20):
    step()
print(json.dumps({"kept": kept, "faults": faults() - before}))
"""


def churn(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


@glibc
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    handed_back, kept = churn("handed back"), churn("kept")
    assert handed_back["kept"] is False and kept["kept"] is True
    # 20 rounds of 40 MiB are 204,800 pages: handed back, every round faults them in again; kept,
    # the later rounds reuse the first round's pages
    assert handed_back["faults"] > 150_000
    assert kept["faults"] < 10_000


@glibc
def test_a_second_call_changes_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_kept", False)
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True


@pytest.mark.parametrize("variable, value", [
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
    ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    ("LD_PRELOAD", "/opt/lib/libtcmalloc_minimal.so.4"),
])
def test_an_allocator_the_user_chose_is_left_alone(monkeypatch, variable, value):
    monkeypatch.setattr(allocator, "_kept", False)
    monkeypatch.setenv(variable, value)
    assert allocator.keep_freed_memory() is False
