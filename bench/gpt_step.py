"""Condition-transformer training-step time for the shapes32 config and its variants, side by side.

One full step each (forward, loss, backward, clipping, optimizer), on random tokens and
conditions, in one process, so the ratios compare like with like:

    python bench/gpt_step.py                       # the shipped config and the variants it adds up from
    python bench/gpt_step.py --steps 100 --variant "adamw" "muon,rope_2d"
    python bench/gpt_step.py --variant shipped --before 3d5c04c --rounds 3   # the model code of a revision against the tree's
    OMP_NUM_THREADS=1 python bench/gpt_step.py --rounds 3 --variant model.n_layer=4 model.n_layer=3 model.n_layer=2
    python bench/gpt_step.py --rounds 3 --variant run.precision=fp32 run.precision=bf16

Each step runs under autocast as the trainer would with the variant's `run.precision` ("auto": bf16
on a CPU with AMX or AVX512-BF16, float32 on others).

With `--before REV` each variant is timed twice, alternating: models/gpt.py and models/rope.py as of
REV (bench/revision.py) and as in the working tree, on the same initial weights, and the script
says whether the first step's loss is bit-identical and how far the losses of three steps differ.

A variant is "shipped" (the config file as it is), a comma-separated list of config overrides
("model.n_layer=2,run.batch_size=24": the config file with them), or a comma-separated list of:
adamw (start from AdamW, learned positions only, no per-layer condition, batch 16), rope_2d,
cond_every_layer, muon, b32 (batch 32).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_name  # noqa: E402
from bench.revision import config_as_of, load_revision  # noqa: E402
from clipgen.config import load_config  # noqa: E402
from clipgen.engine.allocator import keep_freed_memory  # noqa: E402
from clipgen.models.gpt import ConditionTransformer  # noqa: E402
from clipgen.engine.trainer import autocast_context, autocast_dtype  # noqa: E402
from clipgen.train.gpt import GPTTrainConfig, make_optimizer  # noqa: E402

DEFAULT_VARIANTS = ["adamw", "adamw,rope_2d,cond_every_layer", "adamw,rope_2d,cond_every_layer,muon", "shipped"]


def configure(base: GPTTrainConfig, variant: str, config_path: str) -> tuple:
    """(model config, optimizer config, batch, autocast dtype or None) of a variant."""
    parts = set(variant.split(","))
    cpu = torch.device("cpu")
    if "shipped" in parts:
        return base.model, base.optim, base.run.batch_size, autocast_dtype(base.run, cpu)
    if all("=" in part for part in parts):  # config overrides on the config file
        cfg = load_config(GPTTrainConfig, config_path, variant.split(","))
        return cfg.model, cfg.optim, cfg.run.batch_size, autocast_dtype(cfg.run, cpu)
    model = replace(base.model, rope_2d="rope_2d" in parts, cond_every_layer="cond_every_layer" in parts)
    optim = replace(base.optim, optimizer="muon" if "muon" in parts else "adamw")
    return model, optim, 32 if "b32" in parts else 16, autocast_dtype(base.run, cpu)


def make_step(model_cls, model_cfg, optim_cfg, batch: int, amp=None, initial: dict | None = None):
    """A closure running one full step of a fresh model (weights `initial` when given) -> loss,
    its forward under autocast to `amp` when given, as the trainer does."""
    torch.manual_seed(0)
    model = model_cls(model_cfg).train()
    if initial is not None:
        model.load_state_dict(initial)
    opt = make_optimizer(model, optim_cfg)
    generator = torch.Generator().manual_seed(1)
    cond = torch.randn(batch, model_cfg.cond_dim, generator=generator)
    tokens = torch.randint(0, model_cfg.vocab_size, (batch, model_cfg.block_size), generator=generator)
    drop = torch.rand(batch, generator=generator) < 0.1

    def one_step() -> torch.Tensor:
        with autocast_context(cond.device, amp):
            loss = model.loss(cond, tokens, drop)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim_cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return model, one_step


def time_steps(one_step, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        one_step()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    return (time.perf_counter() - start) / steps * 1000


def step_ms(model_cfg, optim_cfg, batch: int, amp, steps: int, warmup: int) -> float:
    return time_steps(make_step(ConditionTransformer, model_cfg, optim_cfg, batch, amp)[1], steps, warmup)


def before_after(before_module, model_cfg, optim_cfg, batch: int, amp, steps: int, warmup: int, rounds: int = 3) -> tuple:
    """(before ms, after ms, (first loss bit-identical, largest loss difference over 3 steps)),
    timed in alternating rounds."""
    tree_model, tree_step = make_step(ConditionTransformer, model_cfg, optim_cfg, batch, amp)
    initial = {k: v.clone() for k, v in tree_model.state_dict().items()}
    before_cfg = config_as_of(before_module.GPTConfig, model_cfg)
    _, before_step = make_step(before_module.ConditionTransformer, before_cfg, optim_cfg, batch, amp, initial)
    # from the same weights the first loss should agree bit for bit; after a few updates, a change
    # in summation order (e.g. a gradient reduced over fewer rows) may show in the last bits
    _, tree_check = make_step(ConditionTransformer, model_cfg, optim_cfg, batch, amp, initial)
    losses = [(before_step(), tree_check()) for _ in range(3)]
    same = (torch.equal(*losses[0]), max(abs(a.item() - b.item()) for a, b in losses))
    times = {"before": [], "after": []}
    for _ in range(rounds):
        times["before"].append(time_steps(before_step, steps, warmup))
        times["after"].append(time_steps(tree_step, steps, warmup))
    return min(times["before"]), min(times["after"]), same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/gpt/shapes32.yaml")
    parser.add_argument("--variant", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--before", help="git revision: time its model code against the working tree's")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (over the variants, or before/after); each keeps its best")
    args = parser.parse_args()
    keep_freed_memory()  # as every clipgen command and script does (bench/bench_allocator.py: without it)
    base = load_config(GPTTrainConfig, args.config)
    cpu = cpu_name()
    print(f"{cpu}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.before:
        before = load_revision(args.before)
        print(f"{'variant':<45} {'batch':>5} {'before ms':>10} {'after ms':>9} {'before/after':>13}  first loss identical, max loss diff in 3 steps")
        for variant in args.variant:
            model_cfg, optim_cfg, batch, amp = configure(base, variant, args.config)
            ms_before, ms_after, same = before_after(before, model_cfg, optim_cfg, batch, amp, args.steps, args.warmup, args.rounds)
            print(f"{variant:<45} {batch:>5} {ms_before:>10.1f} {ms_after:>9.1f} {ms_before / ms_after:>12.2f}x  {same[0]}, {same[1]:.1e}")
        return
    print(f"{'variant':<45} {'batch':>5} {'ms/step':>8} {'ms/image':>9} {'ms/image ratio':>15}")
    configs = {variant: configure(base, variant, args.config) for variant in args.variant}
    best = {variant: float("inf") for variant in configs}
    for _ in range(args.rounds):  # alternating rounds, the best of each: the machine's load falls on all alike
        for variant, (model_cfg, optim_cfg, batch, amp) in configs.items():
            best[variant] = min(best[variant], step_ms(model_cfg, optim_cfg, batch, amp, args.steps, args.warmup))
    first = None
    for variant, ms in best.items():
        batch = configs[variant][2]
        first = first or ms / batch
        print(f"{variant:<45} {batch:>5} {ms:>8.1f} {ms / batch:>9.2f} {ms / batch / first:>15.2f}")


if __name__ == "__main__":
    main()
