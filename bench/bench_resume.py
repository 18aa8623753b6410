"""Resume costs the same at step N and at step 50·N: time from `--resume` to the first new step.

    python bench/bench_resume.py            # ~2 min on 2 cores
    python bench/bench_resume.py --quick    # a smoke run

For the image loader (a tiny VQGAN on shapes-zh shards) and the token loader (a tiny condition
transformer on extracted tokens) it trains one run for N steps and one for 50·N, then resumes
each (from a fresh copy, several times, alternating) and times `train-vqgan/train-gpt --resume`
from the call to the end of its first new step: model build, checkpoint load, data start and
one step. Beside it, what replaying the consumed batches costs (what resuming did before the
data position was recorded: every consumed image read and decoded again). The last line ends
with the worse of the two ratios t(50·N) / t(N).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import shutil
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipgen.cli import main as clipgen_main  # noqa: E402
from clipgen.data.shapes_shards import make_shapes  # noqa: E402
from clipgen.data import token_dataset  # noqa: E402
from clipgen.data.loader import ImageDataConfig, make_image_loader  # noqa: E402
from clipgen.data.tokens import write_token_shard  # noqa: E402
from clipgen.train.gpt import GPTTask  # noqa: E402
from clipgen.train.vqgan import VQGANTask  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCH = 16


def settings(pairs: dict) -> list[str]:
    return [item for key, value in pairs.items() for item in ("--set", f"{key}={value}")]


def vqgan_args(shards: Path, out: Path, steps: int) -> list[str]:
    return ["train-vqgan", "--config", str(ROOT / "configs/vqgan/shapes32.yaml"), *settings({
        "run.out_dir": out, "run.max_steps": steps, "run.batch_size": BATCH, "run.log_every": 10_000,
        "run.image_every": 0, "run.eval_every": 0, "run.ckpt_every": 0, "data.shards": shards,
        "data.image_size": 16, "eval.shards": "", "model.resolution": 16, "model.ch_mult": "[1, 2]",
        "model.z_channels": 8, "model.embed_dim": 4, "model.n_embed": 32, "optim.schedule": "constant",
    })]  # fmt: skip


def gpt_args(tokens: Path, out: Path, steps: int) -> list[str]:
    return ["train-gpt", "--config", str(ROOT / "configs/gpt/shapes32.yaml"), *settings({
        "run.out_dir": out, "run.max_steps": steps, "run.batch_size": BATCH, "run.log_every": 10_000,
        "run.image_every": 0, "run.eval_every": 0, "run.ckpt_every": 0, "data.train": tokens, "data.val": "",
        "model.vocab_size": 32, "model.block_size": 64, "model.cond_dim": 16, "model.n_layer": 1, "model.n_head": 2,
        "model.n_embd": 32, "optim.schedule": "constant", "optim.warmup_steps": 1,
    })]  # fmt: skip


def write_random_tokens(out: Path, count: int) -> None:
    """Token shards as `clipgen extract` writes them; what they hold does not matter here."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True)
    for shard in range(0, count, 250):
        samples = [{"key": f"{i:08d}", "codes": rng.integers(0, 32, (8, 8)).astype(np.int16),
                    "clip": rng.standard_normal(16), "meta": {}} for i in range(shard, shard + 250)]  # fmt: skip
        write_token_shard(out / f"shard-{shard // 250:06d}.tar", samples)


def quietly(args: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if clipgen_main(args) != 0:
            raise SystemExit(f"failed: clipgen {' '.join(args[:3])}")


def seconds_to_first_new_step(command: str, run_dir: Path, steps: int, task_cls: type) -> float:
    """From the `--resume` call to the end of the first step it trains."""
    first: list[float] = []
    real_step = task_cls.train_step

    def timed_step(self, micro_batches, step):
        metrics = real_step(self, micro_batches, step)
        if not first:
            first.append(time.perf_counter())
        return metrics

    token_dataset._RECENT_LOADS.clear()  # no run may find another's tokens already read
    task_cls.train_step = timed_step
    try:
        started = time.perf_counter()
        quietly([command, "--resume", str(run_dir), "--set", f"run.max_steps={steps + 1}"])
    finally:
        task_cls.train_step = real_step
    return first[0] - started


def replay_seconds(shards: Path, batches: int) -> float:
    """Reading and decoding `batches` training batches again: resuming without a data position."""
    cfg = ImageDataConfig(shards=str(shards), image_size=16, crop="center", flip=True)
    started = time.perf_counter()
    for _ in islice(make_image_loader(cfg, batch_size=BATCH, seed=0, train=True), batches):
        pass
    return time.perf_counter() - started


def resume_times(command: str, runs: dict[int, Path], task_cls: type, repeats: int, scratch: Path) -> dict[int, float]:
    times: dict[int, list[float]] = {steps: [] for steps in runs}
    for _ in range(repeats):
        for steps, run_dir in runs.items():  # alternating, so drift on a shared machine hits both
            copy = scratch / f"{run_dir.name}-copy"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(run_dir, copy)
            times[steps].append(seconds_to_first_new_step(command, copy, steps, task_cls))
    return {steps: statistics.median(found) for steps, found in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="N: the short run's steps (the long one has 50·N)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="N=4, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 4, 1
    logging.disable(logging.WARNING)
    short, long = args.steps, 50 * args.steps
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_shapes(root / "images", 2000, size=16, seed=0, shard_size=250)
        write_random_tokens(root / "tokens", 2000)
        ratios = []
        for name, command, task_cls, make_args, data in (
            ("image loader (train-vqgan)", "train-vqgan", VQGANTask, vqgan_args, root / "images"),
            ("token loader (train-gpt)", "train-gpt", GPTTask, gpt_args, root / "tokens"),
        ):
            runs = {steps: root / f"{command}-{steps}" for steps in (short, long)}
            for steps, run_dir in runs.items():
                quietly(make_args(data, run_dir, steps))
            times = resume_times(command, runs, task_cls, args.repeats, root)
            ratio = times[long] / times[short]
            ratios.append(ratio)
            print(f"{name}: to the first new step {times[short]:.2f} s after {short} steps, "
                  f"{times[long]:.2f} s after {long} steps: ratio {ratio:.2f}")  # fmt: skip
            if command == "train-vqgan":
                print(f"  replaying the {long} consumed batches instead (decoding every image again): "
                      f"{replay_seconds(data, long):.2f} s")  # fmt: skip
        print(f"resume time after {long} steps over after {short}, the worse of the two loaders: ratio {max(ratios):.2f}")


if __name__ == "__main__":
    main()
