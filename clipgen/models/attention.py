"""Scaled dot-product attention, kept in float32 on a CPU under bf16 autocast.

On a CPU with AMX, bf16 autocast makes the condition transformer's matrix products 3x faster, but
torch's CPU flash-attention kernel is far slower in bf16 than in float32 (its backward several
times over in a profile of the shapes32 step, which was then slower than in float32 throughout). Attention in
float32 and everything else in bf16 made that step 1.30x faster than float32 on 2 threads, 1.39x on
one (`bench/gpt_step.py --variant run.precision=fp32 run.precision=bf16`, BENCHMARKS.md). On a GPU,
bf16 attention is what flash attention is for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options) -> torch.Tensor:
    """`F.scaled_dot_product_attention(q, k, v, **options)`; float32 on a CPU under autocast."""
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **options)
    return F.scaled_dot_product_attention(q, k, v, **options)
