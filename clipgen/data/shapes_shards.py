"""The shapes-zh corpus written as webdataset shards plus manifest.json (`clipgen make-shapes`).

Drawing lives in shapes.py and shard writing in shards.py; this joins the two, so that the demo,
the tests and the benchmarks draw a corpus exactly as the command does without going through it.
"""

from __future__ import annotations

import os
from typing import Any

from tqdm import tqdm

from clipgen.data.shapes import GENERATOR_VERSION, check_canvas_size, render_sample
from clipgen.data.shards import ShardSetWriter


def make_shapes(out_dir: str | os.PathLike, n: int, *, size: int = 32, seed: int = 0, shard_size: int = 1000,
                overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Write samples 0..n-1 of shapes-zh(seed, size) as shards; return the manifest."""
    check_canvas_size(size)
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if seed < 0:
        raise ValueError(f"--seed must be non-negative, got {seed}")
    source = {"kind": "shapes-zh", "generator": GENERATOR_VERSION, "size": size, "seed": seed, "n": n,
              "antialias": False}
    with ShardSetWriter(out_dir, shard_size=shard_size, source=source, overwrite=overwrite) as writer:
        for index in tqdm(range(n), desc="drawing shapes-zh", unit=" img", disable=not progress):
            sample = render_sample(index, seed=seed, size=size)
            writer.add(f"{index:08d}", "png", sample.png(), sample.meta(seed))
    return writer.manifest()
