"""KV-cache sampling against the naive sampler that re-runs the whole sequence at every step.

    python bench/bench_sampling.py          # 256 tokens, 8 layers x 256, batch 16: ~2 min on 2 cores
    python bench/bench_sampling.py --layers 24 --width 1024 --heads 16 --batch 8   # paper scale

Both samplers draw from the same random model with the same seed; the script checks that they
produce the same tokens and prints the time of each and their ratio, measured in one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipgen.models.gpt import ConditionTransformer, GPTConfig  # noqa: E402


def timed_sample(model, cond, kv_cache: bool, guidance: float) -> tuple[float, torch.Tensor]:
    if cond.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    tokens = model.sample(cond, top_k=100, guidance_scale=guidance, generator=torch.Generator(cond.device).manual_seed(0), kv_cache=kv_cache)
    if cond.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=args.vocab, block_size=args.tokens, cond_dim=512, n_prefix=4,
                    n_layer=args.layers, n_head=args.heads, n_embd=args.width)
    model = ConditionTransformer(cfg).to(args.device).eval()
    cond = torch.nn.functional.normalize(torch.randn(args.batch, 512, device=args.device), dim=-1)
    print(f"# bench_sampling: {args.device}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"{args.layers} layers × {args.width}, {model.num_params() / 1e6:.1f}M params, batch {args.batch}, "
          f"{args.tokens} tokens, guidance {args.guidance}")
    timed_sample(model, cond[:1], True, args.guidance)  # warm-up
    cached_s, cached = timed_sample(model, cond, True, args.guidance)
    naive_s, naive = timed_sample(model, cond, False, args.guidance)
    same = torch.equal(cached, naive)
    print(f"{'sampler':>10} {'seconds':>9} {'tokens/s':>9}")
    for name, seconds in (("kv-cache", cached_s), ("naive", naive_s)):
        print(f"{name:>10} {seconds:>9.2f} {args.batch * args.tokens / seconds:>9.0f}")
    print(f"speed-up (naive / kv-cache): {naive_s / cached_s:.1f}x; identical tokens: {same}")


if __name__ == "__main__":
    main()
