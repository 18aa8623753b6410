"""`clipgen make-shapes`: draw the shapes-zh corpus into webdataset shards plus manifest.json."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory for shard-*.tar and manifest.json")
    parser.add_argument("--n", type=int, required=True, help="number of images")
    parser.add_argument("--size", type=int, default=32, help="canvas side S in pixels, a multiple of 16 (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed; sample i depends only on (seed, i)")
    parser.add_argument("--shard-size", type=int, default=1000, help="images per shard (default 1000)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing shard set in --out")


def make_shapes(out_dir: str | os.PathLike, n: int, *, size: int = 32, seed: int = 0, shard_size: int = 1000,
                overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Write samples 0..n-1 of shapes-zh(seed, size) as shards; return the manifest."""
    from tqdm import tqdm

    from clipgen.data.shapes import GENERATOR_VERSION, check_canvas_size, render_sample
    from clipgen.data.shards import ShardSetWriter

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


def run(args: argparse.Namespace) -> int:
    try:
        manifest = make_shapes(args.out, args.n, size=args.size, seed=args.seed, shard_size=args.shard_size,
                               overwrite=args.overwrite, progress=sys.stderr.isatty())
    except (ValueError, FileExistsError, NotADirectoryError) as err:
        print(f"clipgen make-shapes: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {manifest['written']} shapes-zh images ({args.size}x{args.size}) "
          f"to {len(manifest['shards'])} shard(s) in {args.out}")
    return 0
