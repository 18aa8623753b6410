"""`clipgen make-shapes`: draw the shapes-zh corpus into webdataset shards plus manifest.json."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory for shard-*.tar and manifest.json")
    parser.add_argument("--n", type=int, required=True, help="number of images")
    parser.add_argument("--size", type=int, default=32, help="canvas side S in pixels, a multiple of 16 (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed; sample i depends only on (seed, i)")
    parser.add_argument("--shard-size", type=int, default=1000, help="images per shard (default 1000)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing shard set in --out")


def run(args: argparse.Namespace) -> int:
    from clipgen.data.shapes_shards import make_shapes

    try:
        manifest = make_shapes(args.out, args.n, size=args.size, seed=args.seed, shard_size=args.shard_size,
                               overwrite=args.overwrite, progress=sys.stderr.isatty())
    except (ValueError, FileExistsError, NotADirectoryError) as err:
        print(f"clipgen make-shapes: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {manifest['written']} shapes-zh images ({args.size}x{args.size}) "
          f"to {len(manifest['shards'])} shard(s) in {args.out}")
    return 0
