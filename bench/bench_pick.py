"""The per-row token pick against torch.multinomial, side by side.

    python bench/bench_pick.py                     # vocab 1024 (the demo) and 16384 (paper scale)
    python bench/bench_pick.py --before 3d5c04c --top-k 500 --top-p 0.95   # clip-gen's settings: the pick of a revision against the tree's

clipgen's sampler picks each row's token by inverse CDF from that row's own uniform stream
(models/token_pick.py, RowPicker), so an image does not depend on what shares its batch; the usual pick
is torch.multinomial with one generator for the whole batch. Both take the same logits, top-k
and top-p here; the script prints the time per sampling step of each and the ratio, measured in
one run, at batch 1 and 16, the pickers taking turns for `--rounds` rounds (the median is
printed). What it costs is to be weighed against a model step (bench_sampling.py).
With `--before REV` it also times RowPicker.pick as of that git revision (bench/revision.py) and
counts the steps where the two picked different tokens from the same logits and uniforms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_name  # noqa: E402
from bench.revision import load_revision  # noqa: E402
from clipgen.models.token_pick import RowPicker, filter_logits  # noqa: E402


def per_step_us(fn, steps: int) -> float:
    fn(0)  # warm-up
    start = time.perf_counter()
    for step in range(steps):
        fn(step)
    return (time.perf_counter() - start) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[1024, 16384])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--before", help="git revision whose RowPicker.pick to time beside the tree's")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is printed")
    args = parser.parse_args()
    before = load_revision(args.before) if args.before else None
    print(f"# bench_pick: {cpu_name()}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, top-k {args.top_k}, "
          f"top-p {args.top_p}, {args.steps} steps")
    extra = f" {'before µs':>10} {'before/now':>10} {'tokens differ':>13}" if before else ""
    print(f"{'vocab':>6} {'batch':>5} {'multinomial µs':>15} {'per-row µs':>11} {'ratio':>6}{extra}")
    for vocab in args.vocab:
        for batch in args.batch:
            logits = torch.randn(batch, vocab, generator=torch.Generator().manual_seed(0)) * 3
            generator = torch.Generator().manual_seed(0)
            uniforms = torch.rand(batch, args.steps, dtype=torch.float64, generator=generator)
            picker = RowPicker(batch, "cpu", 1.0, args.top_k, args.top_p, 1.0, uniforms)

            def multinomial(step):
                probs = F.softmax(filter_logits(logits, args.top_k, args.top_p), dim=-1)
                return torch.multinomial(probs, 1, generator=generator)

            now_pick = lambda step: picker.pick(logits, step)  # noqa: E731
            pickers = {"multinomial": multinomial, "now": now_pick}
            if before:
                old_picker = before.RowPicker(batch, "cpu", 1.0, args.top_k, args.top_p, 1.0, uniforms)
                pickers["before"] = lambda step: old_picker.pick(logits, step)
            # the pickers take turns, round by round, so a change in the machine's load falls on all
            times = {name: [] for name in pickers}
            for _ in range(args.rounds):
                for name, fn in pickers.items():
                    times[name].append(per_step_us(fn, args.steps))
            old, new = statistics.median(times["multinomial"]), statistics.median(times["now"])
            line = f"{vocab:>6} {batch:>5} {old:>15.1f} {new:>11.1f} {new / old:>6.2f}"
            if before:
                then = statistics.median(times["before"])
                step_logits = [logits + 0.5 * torch.randn(logits.shape, generator=generator) for _ in range(args.steps)]
                differ = sum(not torch.equal(picker.pick(x, i), old_picker.pick(x, i)) for i, x in enumerate(step_logits))
                line += f" {then:>10.1f} {then / new:>9.2f}x {differ:>6} of {args.steps}"
            print(line)


if __name__ == "__main__":
    main()
