"""Conversions between model images (float NCHW in [-1, 1]) and pixels (uint8, PIL)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, 3, H, W] on the CPU (uint8 input passes through)."""
    if images.dtype == torch.uint8:
        return images.cpu()
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(a) for a in to_uint8(images).permute(0, 2, 3, 1).numpy()]


def from_pil(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL images of one size -> uint8 [N, 3, H, W]."""
    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2)
