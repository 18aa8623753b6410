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

from typing import Callable, TypeVar

import numpy as np
from PIL import Image

Entry = TypeVar("Entry", Image.Image, np.ndarray)


class DecodedImageCache:
    """What `make` returned for each (shard, key), up to `budget_mb` of pixels. One reader keeps one
    kind of entry: decoded images, or transformed pixels where the transform is fixed."""

    def __init__(self, budget_mb: int):
        self.budget_bytes = budget_mb * 2**20
        self.used_bytes = 0
        self.entries: dict[tuple[str, str], Image.Image | np.ndarray] = {}

    def get(self, shard: str, key: str, make: Callable[[], Entry]) -> Entry:
        """make(), from memory when this (shard, key) was made before; kept while the budget
        allows. The entry is shared: callers must not change it in place (the transforms make
        new images and arrays)."""
        entry = self.entries.get((shard, key))
        if entry is None:
            entry = make()
            size = entry.nbytes if isinstance(entry, np.ndarray) else entry.width * entry.height * len(entry.getbands())
            if self.used_bytes + size <= self.budget_bytes:
                self.entries[(shard, key)] = entry
                self.used_bytes += size
        return entry
