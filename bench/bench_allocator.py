"""Training steps with glibc malloc's defaults against `keep_freed_memory` (engine/allocator.py),
side by side in one run.

    python bench/bench_allocator.py                      # the demo's condition transformer and VQGAN steps
    OMP_NUM_THREADS=1 python bench/bench_allocator.py --rounds 3 --steps 40

malloc's thresholds hold for a whole process and cannot be put back, so each measurement is a fresh
interpreter: the same step (bench/gpt_step.py's shipped condition transformer, bench/bench_vqgan.py's
shapes32 VQGAN at batch 16) with the defaults, then kept, alternating over `--rounds`, each row its
best. Printed per step: milliseconds, minor page faults (pages the kernel had to hand over and
zero-fill) and system time, and the defaults' time over the kept one's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_name  # noqa: E402

STEPS = ("gpt", "vqgan")


def gpt_step():
    from bench.gpt_step import configure, make_step
    from clipgen.config import load_config
    from clipgen.models.gpt import ConditionTransformer
    from clipgen.train.gpt import GPTTrainConfig

    config = str(Path(__file__).resolve().parents[1] / "configs/gpt/shapes32.yaml")
    model_cfg, optim_cfg, batch, amp = configure(load_config(GPTTrainConfig, config), "shipped", config)
    return make_step(ConditionTransformer, model_cfg, optim_cfg, batch, amp)[1]


def vqgan_step():
    from bench.bench_vqgan import bench_overrides, make_step
    from clipgen.config import load_config
    from clipgen.train.vqgan import VQGANTrainConfig

    config = str(Path(__file__).resolve().parents[1] / "configs/vqgan/shapes32.yaml")
    cfg = load_config(VQGANTrainConfig, config, [*bench_overrides(gan=False), "run.device=cpu"])
    return make_step(cfg, batch_size=16)[0]


def child(what: str, kept: bool, steps: int, warmup: int) -> dict:
    """One interpreter's measurement: per-step ms, page faults and system ms after warm-up."""
    if kept:
        from clipgen.engine.allocator import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("keep_freed_memory() changed nothing here (not glibc, or an allocator chosen by the environment)")
    step = gpt_step() if what == "gpt" else vqgan_step()
    for _ in range(warmup):
        step()
    usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return {"ms": 1000 * seconds / steps, "faults": (after.ru_minflt - usage.ru_minflt) / steps,
            "sys_ms": 1000 * (after.ru_stime - usage.ru_stime) / steps}  # fmt: skip


def measure(what: str, kept: bool, steps: int, warmup: int) -> dict:
    command = [sys.executable, __file__, "--child", what, "--steps", str(steps), "--warmup", str(warmup)]
    done = subprocess.run(command + (["--kept"] if kept else []), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {'kept' if kept else 'default'} {what} step failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each row keeps its best")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--kept", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.kept, args.steps, args.warmup)))
        return
    import torch

    print(f"# bench_allocator: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.steps} steps after {args.warmup}, best of {args.rounds} alternating rounds")  # fmt: skip
    print(f"{'step':<6} {'malloc':<8} {'ms/step':>8} {'faults/step':>12} {'sys ms/step':>12} {'default/kept':>13}")
    for what in STEPS:
        best = {False: None, True: None}
        for _ in range(args.rounds):
            for kept in best:
                row = measure(what, kept, args.steps, args.warmup)
                best[kept] = row if best[kept] is None or row["ms"] < best[kept]["ms"] else best[kept]
        for kept, row in best.items():
            ratio = f"{best[False]['ms'] / row['ms']:>12.2f}x" if kept else ""
            malloc = "kept" if kept else "default"
            print(f"{what:<6} {malloc:<8} {row['ms']:>8.1f} {row['faults']:>12.0f} {row['sys_ms']:>12.1f} {ratio:>13}", flush=True)


if __name__ == "__main__":
    main()
