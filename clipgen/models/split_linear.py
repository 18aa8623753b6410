"""Matrix products of a few rows, with the weights' output features split across threads.

A KV-cache decode step at paper scale reads every weight once to compute one or two rows: it is
bound by memory bandwidth, not arithmetic. One BLAS call on a 2-row input reads the weights at
about single-core speed (bench/bench_sampler_steps.py --kernels), so on a CPU most of the
machine's bandwidth sits idle. Here each of `parts` threads computes a contiguous block of output
features with torch on one thread, so every core streams its own part of the weights. Each output
is the same dot product as before, computed by the same kernel, so the results are bit-identical.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import torch

# a step's weights must be this large before splitting pays for the thread hand-offs (about 10 µs
# per part and product): paper scale reads 1.3 GB a step, the demo's 4 MB fit in cache
MIN_STEP_WEIGHT_BYTES = 64 * 2**20
MAX_ROWS = 8  # more rows than this and the product is no longer bound by reading the weights

_pools: dict[int, ThreadPoolExecutor] = {}


def split_parts(step_weight_bytes: int, rows: int, device: torch.device) -> int:
    """How many threads a decode step's products should use: 1 (no split) unless the step is
    bound by reading its weights on a CPU with more than one torch thread."""
    if device.type != "cpu" or rows > MAX_ROWS or step_weight_bytes < MIN_STEP_WEIGHT_BYTES:
        return 1
    return torch.get_num_threads()


class SplitLinear:
    """(x [rows, in], weight_t [in, out], bias [out] or None) -> x @ weight_t + bias, computed as
    `parts` column blocks of the output on a pool of as many threads."""

    def __init__(self, parts: int):
        self.parts = parts
        if parts not in _pools:
            _pools[parts] = ThreadPoolExecutor(parts, thread_name_prefix="clipgen-split-linear")
        self.pool = _pools[parts]

    def __call__(self, x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        out = weight_t.shape[1]
        bounds = [out * i // self.parts for i in range(self.parts + 1)]
        blocks = [(weight_t.narrow(1, a, b - a), None if bias is None else bias.narrow(0, a, b - a)) for a, b in zip(bounds, bounds[1:])]
        futures = [self.pool.submit(_product, x, w, b) for w, b in blocks]
        return torch.cat([f.result() for f in futures], dim=1)


def _product(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    with torch.inference_mode():  # thread-local: the sampler's inference mode does not reach the pool
        return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)


@contextlib.contextmanager
def one_torch_thread(enabled: bool = True):
    """torch on one thread inside, as many as before after: SplitLinear's threads then run one
    BLAS thread each rather than each starting a team of its own (oversubscribed cores)."""
    if not enabled:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
