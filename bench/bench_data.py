"""Data-layer throughput on shapes-zh: drawing shards, and reading them back for training.

    python bench/bench_data.py              # ~30-60 s on a 2-core laptop
    python bench/bench_data.py --quick      # a smoke run

For each canvas size it reports
- make-shapes: images/s drawn, PNG-encoded and written to shards (one process);
- read: images/s through the training loader (tar index and read, PNG decode, random crop,
  flip, to a [-1, 1] tensor, batching), in the main process and with DataLoader workers,
  timed from the first batch on so worker start-up is reported separately.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipgen.data.shapes_shards import make_shapes  # noqa: E402
from clipgen.data.loader import ImageDataConfig, make_image_loader  # noqa: E402


def bench_make_shapes(out: Path, n: int, size: int) -> float:
    start = time.perf_counter()
    make_shapes(out, n, size=size, shard_size=max(1, n // 8))
    return n / (time.perf_counter() - start)


def bench_read(shards: Path, size: int, n_images: int, batch_size: int, num_workers: int) -> tuple[float, float]:
    """(images/s after the first batch, seconds to the first batch)."""
    cfg = ImageDataConfig(shards=str(shards), image_size=size, crop="random", flip=True,
                          num_workers=num_workers, resampled=True)
    loader = make_image_loader(cfg, batch_size=batch_size, seed=0, train=True)
    n_batches = max(2, n_images // batch_size)
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first = time.perf_counter()
    seen = sum(len(b["key"]) for b in itertools.islice(batches, n_batches - 1))
    return seen / (time.perf_counter() - first), first - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, for a smoke test")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    # (canvas size, images to draw, images to read, batch size)
    plans = [(32, 4000, 20000, 64), (256, 400, 3000, 32)]
    if args.quick:
        plans = [(32, 200, 1000, 32), (256, 40, 200, 8)]
    print(f"# bench_data: {os.cpu_count()} CPU cores, DataLoader workers for the parallel read: {args.workers}")
    print(f"{'size':>5} {'make-shapes img/s':>18} {'read img/s (0 workers)':>23} "
          f"{f'read img/s ({args.workers} workers)':>23} {'startup s (0 / N workers)':>26}")
    with tempfile.TemporaryDirectory() as tmp:
        for size, n_draw, n_read, batch_size in plans:
            shards = Path(tmp) / f"shapes{size}"
            made = bench_make_shapes(shards, n_draw, size)
            single, start_single = bench_read(shards, size, n_read, batch_size, 0)
            multi, start_multi = bench_read(shards, size, n_read, batch_size, args.workers)
            print(f"{size:>5} {made:>18.0f} {single:>23.0f} {multi:>23.0f} "
                  f"{f'{start_single:.2f} / {start_multi:.2f}':>26}", flush=True)


if __name__ == "__main__":
    main()
