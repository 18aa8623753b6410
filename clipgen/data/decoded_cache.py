"""Decoded images kept in memory for corpora that fit, so each is decoded once, not once an epoch.

On small images decoding is most of what the loader does: for shapes-zh's 32×32 PNGs PIL takes
about 0.15 ms an image, a third of the demo's toy-CLIP step time, which reads its 20,000 images
five times over. The cache holds the decoded RGB image (before any crop or flip, which differ per
epoch) under its shard and key, up to a byte budget per reader process; past it, images are
decoded as usual. Where the transform draws nothing at random (centre crop, no flip: the toy
CLIP's), it holds the transformed uint8 pixels instead, so the resize, crop and PIL-to-array copy
are done once too. It is off by default: a corpus worth a cluster does not fit in memory.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from clipgen.data.decode import decode_rgb
from clipgen.data.transforms import ImageTransform


class DecodedImageCache:
    def __init__(self, budget_mb: int):
        self.budget_bytes = budget_mb * 2**20
        self.used_bytes = 0
        self.images: dict[tuple[str, str], Image.Image | np.ndarray] = {}

    def decode(self, shard: str, key: str, data: bytes, min_side: int) -> Image.Image:
        """decode_rgb(data, min_side), from memory when this (shard, key) was decoded before. The
        image is shared: callers must not change it in place (the transforms make new images)."""
        image = self.images.get((shard, key))
        if image is None:
            image = decode_rgb(data, min_side=min_side)
            self._keep(shard, key, image, image.width * image.height * len(image.getbands()))
        return image

    def pixels(self, shard: str, key: str, data: bytes, transform: ImageTransform) -> np.ndarray:
        """transform.pixels(decode_rgb(data)) for a transform that draws nothing at random, from
        memory when seen before. Shared: callers must not change it in place."""
        if transform.random:
            raise ValueError("only a transform without random crop or flip gives the same pixels every epoch")
        pixels = self.images.get((shard, key))
        if pixels is None:
            pixels = transform.pixels(decode_rgb(data, min_side=transform.size))
            self._keep(shard, key, pixels, pixels.nbytes)
        return pixels

    def _keep(self, shard: str, key: str, entry: Image.Image | np.ndarray, size: int) -> None:
        if self.used_bytes + size <= self.budget_bytes:
            self.images[(shard, key)] = entry
            self.used_bytes += size
