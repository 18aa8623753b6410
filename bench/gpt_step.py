"""Condition-transformer training-step time for the shapes32 config and its variants, side by side.

One full step each (forward, loss, backward, clipping, optimizer), on random tokens and
conditions, in one process, so the ratios compare like with like:

    python bench/gpt_step.py                       # the shipped config and the variants it adds up from
    python bench/gpt_step.py --steps 100 --variant "adamw" "muon,rope_2d"

A variant is a comma-separated list of: adamw (start from AdamW, learned positions only, no
per-layer condition, batch 16), rope_2d, cond_every_layer, muon, b32 (batch 32); "shipped" is the
config file as it is.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipgen.config import load_config  # noqa: E402
from clipgen.models.gpt import ConditionTransformer  # noqa: E402
from clipgen.train.gpt import GPTTrainConfig, make_optimizer  # noqa: E402

DEFAULT_VARIANTS = ["adamw", "adamw,rope_2d,cond_every_layer", "adamw,rope_2d,cond_every_layer,muon", "shipped"]


def configure(base: GPTTrainConfig, variant: str) -> tuple:
    parts = set(variant.split(","))
    if "shipped" in parts:
        return base.model, base.optim, base.run.batch_size
    model = replace(base.model, rope_2d="rope_2d" in parts, cond_every_layer="cond_every_layer" in parts)
    optim = replace(base.optim, optimizer="muon" if "muon" in parts else "adamw")
    return model, optim, 32 if "b32" in parts else 16


def step_ms(model_cfg, optim_cfg, batch: int, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = ConditionTransformer(model_cfg).train()
    opt = make_optimizer(model, optim_cfg)
    cond = torch.randn(batch, model_cfg.cond_dim)
    tokens = torch.randint(0, model_cfg.vocab_size, (batch, model_cfg.block_size))
    drop = torch.rand(batch) < 0.1

    def one_step():
        model.loss(cond, tokens, drop).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim_cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one_step()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/gpt/shapes32.yaml")
    parser.add_argument("--variant", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    base = load_config(GPTTrainConfig, args.config)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'variant':<45} {'batch':>5} {'ms/step':>8} {'ms/image':>9} {'ms/image ratio':>15}")
    first = None
    for variant in args.variant:
        model_cfg, optim_cfg, batch = configure(base, variant)
        ms = step_ms(model_cfg, optim_cfg, batch, args.steps, args.warmup)
        first = first or ms / batch
        print(f"{variant:<45} {batch:>5} {ms:>8.1f} {ms / batch:>9.2f} {ms / batch / first:>15.2f}")


if __name__ == "__main__":
    main()
