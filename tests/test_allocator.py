"""glibc malloc keeps freed memory for the next step (engine/allocator.py), and stays out of the way
of an allocator the user chose."""

import json
import os
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
    applied = allocator.keep_freed_memory()
else:
    mallopt = ctypes.CDLL(None).mallopt
    applied = bool(mallopt(allocator.M_MMAP_THRESHOLD, 128 << 10) and mallopt(allocator.M_TRIM_THRESHOLD, 128 << 10))
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():
    tensors = [torch.ones(1 << 18) for _ in range(40)]  # 40 of 1 MiB
    del tensors
step()
before = faults()
for _ in range(20):
    step()
print(json.dumps({"applied": applied, "faults": faults() - before}))
"""


def without_allocator_choices(environ) -> dict:
    """The environment less what would make keep_freed_memory stand aside."""
    chosen = ("GLIBC_TUNABLES", "LD_PRELOAD", *allocator.USER_VARIABLES)
    return {key: value for key, value in environ.items() if key not in chosen}


@pytest.fixture
def fresh(monkeypatch):
    """This process as if keep_freed_memory had not run and the environment chose nothing."""
    monkeypatch.setattr(allocator, "_kept", False)
    for key in set(os.environ) - set(without_allocator_choices(os.environ)):
        monkeypatch.delenv(key)


def churn(mode: str) -> dict:
    command = [sys.executable, "-c", CHURN, mode]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=without_allocator_choices(os.environ)).stdout
    return json.loads(out.splitlines()[-1])


@glibc
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    handed_back, kept = churn("handed back"), churn("kept")
    assert handed_back["applied"] is True and kept["applied"] is True
    # 20 rounds of 40 MiB are 204,800 pages: handed back, every round faults them in again; kept,
    # the later rounds reuse the first round's pages
    assert handed_back["faults"] > 150_000
    assert kept["faults"] < 10_000


@glibc
def test_a_second_call_changes_nothing(fresh, monkeypatch):
    assert allocator.keep_freed_memory() is True

    def no_second_look(*args):
        raise AssertionError("the C library was looked up again")

    monkeypatch.setattr(allocator.ctypes, "CDLL", no_second_look)
    assert allocator.keep_freed_memory() is True


@pytest.mark.parametrize("variable, value", [
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
    ("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX2:glibc.malloc.mmap_threshold=65536"),
    ("MALLOC_TRIM_THRESHOLD_", "0"),
    ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    ("LD_PRELOAD", "/opt/lib/libtcmalloc_minimal.so.4"),
])
def test_an_allocator_the_user_chose_is_left_alone(fresh, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    assert allocator.keep_freed_memory() is False


@glibc
def test_other_malloc_tunables_do_not_count_as_a_choice(fresh, monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert allocator.keep_freed_memory() is True
