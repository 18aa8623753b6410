"""clipgen's condition transformer side by side with HFAiLab/clip-gen's own GPT class (issue 12).

    git clone https://github.com/HFAiLab/clip-gen /work/peers/clip-gen      # once, outside this repo
    python bench/bench_peer_gpt.py --clip-gen /work/peers/clip-gen           # 6 × 384, vocab 16384
    python bench/bench_peer_gpt.py --clip-gen ... --layers 24 --width 1024 --heads 16   # the paper's
    python bench/bench_peer_gpt.py --clip-gen ... --quick                    # tiny smoke test, seconds
    python bench/bench_peer_gpt.py --clip-gen ... --profile                  # torch.profiler tables instead

Both models are built at one shape (layers, width, heads, 256 = 16×16 image tokens, the codebook
size, a 512-d CLIP embedding) and measured in one process, alternating step by step so that the
machine's load falls on every row alike:
1. a training step (forward, cross-entropy on the 256 image tokens, backward, torch.optim.AdamW with
   the same groups and settings), ms/step at two batch sizes;
2. 256 tokens sampled at one batch: clip-gen's own `GPT.sample` (models/gpt.py: the whole sequence
   re-run at every step, top-k then top-p, torch.multinomial), clipgen's
   `ConditionTransformer.sample` with its KV cache, and with `kv_cache=False`.

clipgen runs twice: with the options of its shipped configs (configs/gpt/medium_f16_16384.yaml:
4 prefix tokens, the condition at every token and every layer, 2-D RoPE, no biases) and with the
options closest to clip-gen's architecture (one condition token, learned positions only, biases).
Dropout 0.1 on both sides, as both ship it; its sites differ (clip-gen's blocks drop at four
places, clipgen's at two), and `--dropout 0` compares the two without it. Without a peer checkout
the script says how to get one and exits 0, so it can sit in a list of benches that run anywhere.
The default shape takes ~3.5 minutes on 2 CPU cores (8 × 512 takes ~7), `--quick` ~12 s.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipgen.models.gpt import ConditionTransformer, GPTConfig, adamw_param_groups  # noqa: E402

PEER_URL = "https://github.com/HFAiLab/clip-gen"
TOKENS = 256  # 16 × 16, the only grid both models are built for (clip-gen's pos_emb is 256 long)
CLIP_WIDTH = 512
# clip-gen's train_gpt.py sampling settings (its demo.py uses the same)
PEER_TOP_K, PEER_TOP_P = 500, 0.95


def load_peer_gpt_class(checkout: str | None):
    """clip-gen's `GPT` class from its checkout, or None where there is none. Its models/gpt.py
    (checked at 97420d3) imports torch alone, so nothing needs stubbing; its utils.py and train
    scripts import hfai, and the bench imports neither."""
    if not checkout or not (Path(checkout) / "models" / "gpt.py").is_file():
        return None
    root = Path(checkout).resolve()
    sys.path.insert(0, str(root))
    module = importlib.import_module("models.gpt")
    if root not in Path(module.__file__).resolve().parents:
        raise ImportError(f"`models.gpt` came from {module.__file__}, not from {root}: another `models` package is first on sys.path")
    return module.GPT


@dataclass
class Row:
    """One model under test: how to run a training step and how to sample."""

    name: str
    options: str
    model: nn.Module
    peer: bool  # clip-gen's GPT (forward(idx, embed), sample(embed, steps, ...)) or clipgen's

    def loss(self, cond: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if not self.peer:
            return self.model.loss(cond, tokens)
        # clip-gen's train_gpt.py: the first 255 tokens in, logits for all 256 out
        logits = self.model(tokens[:, :-1], cond)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens.reshape(-1))

    def sample(self, cond: torch.Tensor, top_k: int, top_p: float, kv_cache: bool, seed: int, steps: int = TOKENS) -> torch.Tensor:
        if self.peer:
            torch.manual_seed(seed)  # its sampler draws with torch.multinomial from the global stream
            return self.model.sample(cond, steps=steps, top_k=top_k, top_p=top_p)
        generator = torch.Generator(cond.device).manual_seed(seed)
        return self.model.sample(cond, num_tokens=steps, top_k=top_k, top_p=top_p, kv_cache=kv_cache, generator=generator)


def block_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.blocks.parameters())


def all_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_rows(peer_gpt, args) -> list[Row]:
    shape = dict(vocab_size=args.vocab, block_size=TOKENS, cond_dim=CLIP_WIDTH, n_layer=args.layers, n_head=args.heads, n_embd=args.width, dropout=args.dropout)
    torch.manual_seed(0)
    peer = peer_gpt(vocab_size=args.vocab, n_layer=args.layers, n_embed=args.width, n_head=args.heads, block_size=TOKENS, n_cond_embed=CLIP_WIDTH, dropout=args.dropout)
    like_peer = ConditionTransformer(GPTConfig(**shape, n_prefix=1, bias=True))
    shipped = ConditionTransformer(GPTConfig(**shape, n_prefix=4, bias=False, cond_every_token=True, cond_every_layer=True, rope_2d=True))
    rows = [
        # dropout sites per block: clip-gen's nn.TransformerEncoderLayer drops attention weights,
        # the attention output, the 4·width MLP hidden and the MLP output; clipgen the attention
        # weights (inside SDPA) and the MLP output
        Row("clip-gen GPT", "learned positions, 1 condition token, biases, nn.TransformerEncoderLayer, 4 dropouts a block", peer, True),
        Row("clipgen like-peer", "learned positions, 1 prefix token, biases, fused-QKV SDPA, 2 dropouts a block", like_peer, False),
        Row("clipgen shipped", "2-D RoPE + learned positions, 4 prefix tokens, condition at every token and layer, no biases", shipped, False),
    ]
    return [Row(r.name, r.options, r.model.to(args.device), r.peer) for r in rows]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def autocast(args):
    return torch.autocast(args.device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    # the same AdamW for both: clip-gen's settings (utils.configure_optimizer: wd 0.01 on matrices,
    # betas 0.9 / 0.95), nanoGPT's groups (clip-gen's split, give or take its embedding table,
    # which decays here), torch's default implementation on both sides
    return torch.optim.AdamW(adamw_param_groups(model, 0.01), lr=5e-4, betas=(0.9, 0.95))


def train_step(row: Row, optimizer: torch.optim.Optimizer, cond: torch.Tensor, tokens: torch.Tensor, args) -> None:
    with autocast(args):
        loss = row.loss(cond, tokens)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def random_batch(batch: int, args, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised conditions (clip-gen's normalize_clip) and random image tokens."""
    gen = torch.Generator().manual_seed(seed)
    cond = F.normalize(torch.randn(batch, CLIP_WIDTH, generator=gen), dim=-1)
    return cond.to(args.device), torch.randint(0, args.vocab, (batch, TOKENS), generator=gen).to(args.device)


def train_times(rows: list[Row], batch: int, steps: int, args) -> dict[str, list[float]]:
    """ms of each training step per row, the rows taking turns step by step (one warm-up step each)."""
    cond, tokens = random_batch(batch, args, seed=batch)
    optimizers = {row.name: make_optimizer(row.model.train()) for row in rows}
    times: dict[str, list[float]] = {row.name: [] for row in rows}
    for step in range(steps + 1):
        for row in rows[step % len(rows) :] + rows[: step % len(rows)]:  # who goes first rotates
            synchronize(args.device)
            start = time.perf_counter()
            train_step(row, optimizers[row.name], cond, tokens, args)
            synchronize(args.device)
            if step:  # the first is the warm-up
                times[row.name].append((time.perf_counter() - start) * 1000)
    return times


def sample_ms(row: Row, cond: torch.Tensor, kv_cache: bool, args) -> float:
    row.model.eval()
    synchronize(args.device)
    start = time.perf_counter()
    with autocast(args):
        tokens = row.sample(cond, args.top_k, args.top_p, kv_cache, seed=0)
    synchronize(args.device)
    assert tokens.shape == (cond.shape[0], TOKENS), tokens.shape
    return (time.perf_counter() - start) * 1000


def profile_table(fn, rows: int = 16) -> str:
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm-up, outside the profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def run_profiles(rows: list[Row], args) -> None:
    """Operator tables (torch.profiler, self time) of one training step per model at the first
    training batch, and of the first 64 sampling steps per sampler at the sampling batch."""
    batch = args.train_batches[0]
    cond, tokens = random_batch(batch, args, seed=batch)
    for row in rows:
        optimizer = make_optimizer(row.model.train())
        print(f"\n## profile: {row.name}, one training step, batch {batch}")
        print(profile_table(lambda: train_step(row, optimizer, cond, tokens, args)))
    cond, _ = random_batch(args.batch, args, seed=1)
    for row, kv in ((rows[0], False), (rows[1], False), (rows[1], True), (rows[2], True)):
        row.model.eval()
        sampler = "own loop" if row.peer else f"kv_cache={kv}"
        print(f"\n## profile: {row.name}, {sampler}, the first 64 sampling steps, batch {args.batch}")
        print(profile_table(lambda: row.sample(cond, args.top_k, args.top_p, kv, seed=0, steps=64)))


def spread(values: list[float]) -> str:
    return f"{min(values):.0f}–{max(values):.0f}" if len(values) > 1 else "–"


def report_training(rows: list[Row], args) -> dict:
    """Prints the training table; returns {(clipgen row, batch): (peer / row, lowest and highest
    paired per-step ratio)}."""
    peer = rows[0]
    print(f"\ntraining step (forward, loss, backward, AdamW), median of {args.steps} alternating steps after one warm-up")
    print(f"{'model':<18} {'batch':>5} {'ms/step':>9} {'range':>11} {'peer / this':>12}")
    ratios = {}
    for batch in args.train_batches:
        times = train_times(rows, batch, args.steps, args)
        peer_ms = statistics.median(times[peer.name])
        for row in rows:
            ms = statistics.median(times[row.name])
            # paired ratios, step by step: the same moment's load on both sides
            pairs = [p / c for p, c in zip(times[peer.name], times[row.name])]
            if not row.peer:
                ratios[row.name, batch] = (peer_ms / ms, min(pairs), max(pairs))
            print(f"{row.name:<18} {batch:>5} {ms:>9.1f} {spread(times[row.name]):>11} {peer_ms / ms:>11.2f}x")
    return ratios


def report_sampling(rows: list[Row], args) -> dict:
    """Prints the sampling table; returns {(row name, kv_cache): ms}."""
    peer = rows[0]
    cond, _ = random_batch(args.batch, args, seed=1)
    for row in rows:  # warm-up: a few tokens each, so no row pays for first-call allocations
        row.model.eval()
        row.sample(cond, args.top_k, args.top_p, kv_cache=True, seed=0, steps=4)
    # the shipped options' re-run sampler (another ~40 % of the run) only with --all-samplers
    order = [(peer, "own loop, whole sequence", False), (rows[1], "KV cache", True), (rows[1], "kv_cache=False", False),
             (rows[2], "KV cache", True)] + ([(rows[2], "kv_cache=False", False)] if args.all_samplers else [])
    cached = [row for row, _, kv in order if kv]
    rerun = [(row, kv) for row, _, kv in order if not kv]
    draws: dict[tuple, list[float]] = {(row.name, kv): [] for row, _, kv in order}
    # the re-run samplers (~40 s each at the default shape) are drawn once; the KV-cache ones (~4 s)
    # before, between and after them, the median kept
    for turn in range(len(rerun) + 1):
        for row in cached:
            draws[row.name, True].append(sample_ms(row, cond, True, args))
        if turn < len(rerun):
            row, kv = rerun[turn]
            draws[row.name, kv].append(sample_ms(row, cond, kv, args))
    result = {key: statistics.median(values) for key, values in draws.items()}
    print(f"\nsampling {TOKENS} tokens at batch {args.batch}, top-k {args.top_k}, top-p {args.top_p}")
    print(f"{'model':<18} {'sampler':<28} {'ms':>9} {'range':>13} {'ms/token':>9} {'peer / this':>12}")
    for row, sampler, kv in order:
        ms = result[row.name, kv]
        print(f"{row.name:<18} {sampler:<28} {ms:>9.0f} {spread(draws[row.name, kv]):>13} {ms / TOKENS:>9.2f} {result[peer.name, False] / ms:>11.2f}x")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-gen", help=f"a checkout of {PEER_URL}")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=4, help="sampling batch")
    parser.add_argument("--train-batches", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per row and batch (after one warm-up)")
    parser.add_argument("--top-k", type=int, default=PEER_TOP_K)
    parser.add_argument("--top-p", type=float, default=PEER_TOP_P)
    parser.add_argument("--dropout", type=float, default=0.1, help="both sides (0.1: clip-gen's default and clipgen's paper-scale configs)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides (clip-gen ships fp32: use_amp = False)")
    parser.add_argument("--all-samplers", action="store_true", help="also time the shipped options with kv_cache=False")
    parser.add_argument("--quick", action="store_true", help="2 layers × 64, vocab 512, 2 steps: a smoke test")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler tables instead of the timings")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    peer_gpt = load_peer_gpt_class(args.clip_gen)
    if peer_gpt is None:
        print(f"bench_peer_gpt: skipped, no clip-gen checkout ({args.clip_gen or 'no --clip-gen'}): git clone {PEER_URL} and pass --clip-gen DIR")
        return
    if args.quick:
        args.layers, args.width, args.heads, args.vocab, args.steps, args.train_batches = 2, 64, 2, 512, 2, [4, 16]
        args.top_k = min(args.top_k, args.vocab)
    args.device = torch.device(args.device)

    rows = build_rows(peer_gpt, args)
    peer = rows[0]
    print(f"# bench_peer_gpt: {args.device}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}; {args.layers} layers × {args.width}, {args.heads} heads, {TOKENS} tokens, "
          f"vocab {args.vocab}, CLIP {CLIP_WIDTH}; dropout {args.dropout}; AdamW lr 5e-4 betas (0.9, 0.95) wd 0.01")
    print(f"{'model':<18} {'params':>12} {'in blocks':>12}  options")
    for row in rows:
        print(f"{row.name:<18} {all_params(row.model):>12,} {block_params(row.model):>12,}  {row.options}")

    if args.profile:
        run_profiles(rows, args)
        return

    train_ratio = report_training(rows, args)
    sample_result = report_sampling(rows, args)
    print()
    peer_sample = sample_result[peer.name, False]
    for row in (rows[2], rows[1]):
        checks = []
        for batch in args.train_batches:
            ratio, low, high = train_ratio[row.name, batch]
            verdict = "holds" if ratio >= 1.0 else ("within noise" if high >= 1.0 and ratio >= 0.95 else "FAILS")
            checks.append(f"batch {batch} {ratio:.2f}x (steps {low:.2f}–{high:.2f}) {verdict}")
        speedup = peer_sample / sample_result[row.name, True]
        print(f"goal, {row.name}: training no slower than clip-gen's GPT: {'; '.join(checks)}. "
              f"sampling >= 10x at batch {args.batch}: {speedup:.1f}x {'holds' if speedup >= 10 else 'FAILS'}")


if __name__ == "__main__":
    main()
