"""Decoded images kept in memory for corpora that fit, so each is decoded once, not once an epoch.

On small images decoding is most of what the loader does: for shapes-zh's 32×32 PNGs PIL takes
about 0.15 ms an image, a third of the demo's toy-CLIP step time, which reads its 20,000 images
five times over. The cache holds the decoded RGB image (before any crop or flip, which differ per
epoch) under its shard and key, up to a byte budget per reader process; past it, images are
decoded as usual. It is off by default: a corpus worth a cluster does not fit in memory.
"""

from __future__ import annotations

from PIL import Image

from clipgen.data.decode import decode_rgb


class DecodedImageCache:
    def __init__(self, budget_mb: int):
        self.budget_bytes = budget_mb * 2**20
        self.used_bytes = 0
        self.images: dict[tuple[str, str], Image.Image] = {}

    def decode(self, shard: str, key: str, data: bytes, min_side: int) -> Image.Image:
        """decode_rgb(data, min_side), from memory when this (shard, key) was decoded before. The
        image is shared: callers must not change it in place (the transforms make new images)."""
        image = self.images.get((shard, key))
        if image is None:
            image = decode_rgb(data, min_side=min_side)
            size = image.width * image.height * len(image.getbands())
            if self.used_bytes + size <= self.budget_bytes:
                self.images[(shard, key)] = image
                self.used_bytes += size
        return image
