"""Two-dimensional rotary position embedding for a raster of image tokens.

A learned absolute position embedding makes the transformer learn what a shape's tokens look like
next to each other separately at every place on the grid. Rotating queries and keys by each
token's (row, column) makes attention scores depend on the offset between two tokens, so "the
token above, one to the right" is the same lookup everywhere and a shape learned in one corner
transfers to the others. Half of every head's channels rotate with the row, half with the column
(the split 2-D RoPE of LlamaGen and others). The condition prefix is not rotated: an image query's
offset to it is then its own absolute (row, column), which tells it where on the canvas it is.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Rope2D(nn.Module):
    def __init__(self, head_dim: int, n_prefix: int, grid_tokens: int, theta: float):
        super().__init__()
        side = math.isqrt(grid_tokens)
        if side * side != grid_tokens:
            raise ValueError(f"2-D RoPE needs a square token grid; block_size {grid_tokens} is not a square")
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs a head width divisible by 4, not {head_dim}")
        pairs = head_dim // 4  # rotation pairs per axis
        freqs = theta ** (-torch.arange(pairs, dtype=torch.float64) / pairs)
        index = torch.arange(grid_tokens)
        rows, cols = (index // side).double(), (index % side).double()
        angles = torch.cat([rows[:, None] * freqs, cols[:, None] * freqs], dim=1)  # [grid, head_dim/2]
        angles = torch.cat([torch.zeros(n_prefix, angles.shape[1], dtype=angles.dtype), angles])
        angles = torch.cat([angles, angles], dim=1)  # the rotate-half layout: channel c pairs with c + head_dim/2
        # rotate_half(y) = cat(-second half, first half): the halves swapped, times ±1, and the ±1
        # folds into sin exactly (a negation rounds nothing), which saves a kernel per call
        half = head_dim // 2
        sin = angles.sin()
        sin[:, :half] = -sin[:, :half]
        # buffers, not parameters, and left out of the state dict: they follow from the config
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("signed_sin", sin.float(), persistent=False)
        self.half = half

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Rotate [..., T, head_dim] queries or keys (or both, stacked in front) that sit at
        positions start .. start+T-1."""
        t = x.shape[-2]
        return self.rotate(x, self.cos[start : start + t], self.signed_sin[start : start + t])

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
        """x·cos + rotate_half(x)·sin with the tables' rows for x's positions already picked."""
        # in float32 even under bf16 autocast, so that equal offsets still give equal scores
        y = x.float()
        # the swap as a cat of two slices (copies of contiguous runs): index_select over the last
        # dimension gathers element by element, 6x slower here
        swapped = torch.cat([y[..., self.half :], y[..., : self.half]], dim=-1)
        return (y * cos + swapped * signed_sin).to(x.dtype)
