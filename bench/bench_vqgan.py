"""VQGAN training-step time by batch size, measured side by side in one run.

    python bench/bench_vqgan.py                       # shapes32 config on this machine's device
    python bench/bench_vqgan.py --config configs/vqgan/f16_16384.yaml --batch-sizes 1 2 4
    python bench/bench_vqgan.py --batch-sizes 16 --precisions fp32 bf16 --rounds 3   # autocast or not

Each row is one full optimizer step of `VQGANTask.train_step` (forward, reconstruction + VQ loss,
backward, AdamW, EMA when the config has it; with `--gan`, also the discriminator and the
adaptive weight; never LPIPS, whose weights are a local file) on random images, after warm-up. The ratio column compares images/s to the smallest batch size in
the same run, which is what survives the noise of a shared machine. With `--precisions` each
batch size is timed at each `run.precision`, alternating over `--rounds` (each row keeps its best),
and the ratio compares to the first precision at that batch size.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_name  # noqa: E402
from clipgen.data.shapes_shards import make_shapes  # noqa: E402
from clipgen.config import load_config  # noqa: E402
from clipgen.engine.allocator import keep_freed_memory  # noqa: E402
from clipgen.engine.dist import init_distributed  # noqa: E402
from clipgen.train.vqgan import VQGANTask, VQGANTrainConfig  # noqa: E402


def make_step(cfg: VQGANTrainConfig, batch_size: int):
    """(a closure running one full optimizer step on random images -> None, the device)."""
    info = init_distributed(cfg.run.device)
    task = VQGANTask(cfg, info)
    size = cfg.model.resolution
    batch = {"image": torch.rand(batch_size, 3, size, size, device=info.device) * 2 - 1}
    counter = itertools.count()
    return lambda: task.train_step([batch], next(counter)), info.device


def time_steps(cfg: VQGANTrainConfig, batch_size: int, warmup: int, steps: int) -> float:
    """Seconds per optimizer step."""
    step, device = make_step(cfg, batch_size)
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def bench_overrides(gan: bool) -> list[str]:
    """Config overrides for timing steps on random images: LPIPS left out (its weights are a local
    file this benchmark cannot assume; say so in results), a tiny shard set for the paths the task
    checks, and with `gan` the discriminator from the first step."""
    shards = tempfile.mkdtemp(prefix="bench_vqgan_")
    make_shapes(shards, 8, size=32, shard_size=8)
    overrides = ["loss.perceptual_weight=0", f"data.shards={shards}", "eval.shards="]
    return overrides + (["loss.disc_weight=0.75", "loss.disc_start=0"] if gan else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs/vqgan/shapes32.yaml"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gan", action="store_true", help="include the discriminator and adaptive weight")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--precisions", nargs="+", choices=["auto", "fp32", "bf16"], help="run.precision values to compare")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds; each row keeps its best")
    args = parser.parse_args()
    keep_freed_memory()  # as every clipgen command and script does (bench/bench_allocator.py: without it)
    overrides = bench_overrides(args.gan) + args.overrides
    cfg = load_config(VQGANTrainConfig, args.config, overrides)
    device = "cuda" if torch.cuda.is_available() and cfg.run.device != "cpu" else "cpu"
    precisions = args.precisions or [cfg.run.precision]
    configs = {p: load_config(VQGANTrainConfig, args.config, [*overrides, f"run.precision={p}"]) for p in precisions}
    cpu = cpu_name()
    print(f"# bench_vqgan: {Path(args.config).name}, device {device} ({cpu}), torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPU cores, gan {args.gan}")
    print(f"{'precision':>9} {'batch':>6} {'ms/step':>9} {'images/s':>9} {'img/s ratio':>12}")
    base = None
    for batch_size in args.batch_sizes:
        best = {p: float("inf") for p in precisions}
        for _ in range(args.rounds):
            for precision, config in configs.items():
                best[precision] = min(best[precision], time_steps(config, batch_size, args.warmup, args.steps))
        for precision, seconds in best.items():
            rate = batch_size / seconds
            if base is None or (len(precisions) > 1 and precision == precisions[0]):
                base = rate  # one precision: against the first batch size; several: against the first precision
            print(f"{precision:>9} {batch_size:>6} {1000 * seconds:>9.1f} {rate:>9.1f} {rate / base:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
