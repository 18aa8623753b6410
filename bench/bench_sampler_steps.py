"""Time per generated token of the KV-cache sampler at batch 1, before and after a change, in one run.

    flock /tmp/clipgen-timing.lock python bench/bench_sampler_steps.py                   # demo + paper, HEAD vs tree
    flock /tmp/clipgen-timing.lock python bench/bench_sampler_steps.py --scales demo --top-k 500 --top-p 0.95
    flock /tmp/clipgen-timing.lock python bench/bench_sampler_steps.py --before none      # the working tree only

Scales: "demo" is configs/gpt/shapes32.yaml (3 layers × 128 with a 2× MLP, 64 tokens, 512 codes; 2 layers of
4× before 4125b01, as BENCHMARKS.md's demo-scale step times were measured: its weights fit
in cache, so a step is overhead: Python, dispatch, small ops); "paper" is
configs/gpt/medium_f16_16384.yaml (24 × 1024, 256 tokens, 16384 codes, ~351M parameters, 1.4 GB
of fp32 weights: a step is bound by memory bandwidth). Both carry random weights (seed 0). Each
guidance scale is timed: 1.5 runs the conditioned and the null row together (2 rows, as the
pipeline does), 1 runs one row. Settings go in as the pipeline passes them (one-row tensors,
explicit uniforms).

A step is the interval between two consecutive token picks (RowPicker.pick: the pick, then one
forward pass of one position through the cache). After a `--warmup` of steps, `--steps` steps are
timed; ms/step is the median of every timed step of every repeat. "before" is the sampler of
`--before` (a git revision, HEAD by default), loaded from `git show REV:clipgen/models/gpt.py`
into a temporary module and run on the same weights; runs of the two alternate. The script says
whether both pick the same tokens from the same logits, bit for bit, at every step (at paper scale
against a revision before 89622b1 they do not: the step's large products went from MKL to oneDNN,
equal to rounding).

At paper scale it also measures the machine's memory bandwidth in the same run (best of
`--bw-repeats`): a copy of a 1 GiB float32 tensor, `dst.copy_(src)`, counted as bytes read +
written, and a pure read, `src.sum()`. A step reads its weights and writes almost nothing, so the
goal (≥ 50 %) is measured against the pure read; the ratio to the copy figure is printed too. The
bytes a step must read: every matrix and norm of every block, the final norm and the head, and
the embedding rows it gathers (one token row, one position row); the condition projections run
once per call, not per step, and are left out. The KV cache a step reads is printed beside it.

At demo scale `torch.profiler` splits a step's time into the matrix products (aten::mm/addmm),
attention (the SDPA kernel) and the rest; the profiler's own cost per operator lands in "the
rest", so the profile-free figure beside it replays the step's matrix products alone, with the
same shapes and weights, and divides by the step time.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import clipgen.models.gpt as tree_gpt  # noqa: E402
from bench.machine import cpu_name  # noqa: E402
from bench.revision import config_as_of, load_revision  # noqa: E402
from clipgen.config import load_config  # noqa: E402
from clipgen.train.gpt import GPTTrainConfig  # noqa: E402

SCALES = {"demo": "configs/gpt/shapes32.yaml", "paper": "configs/gpt/medium_f16_16384.yaml"}


def same_weights(module, model):
    """`module`'s ConditionTransformer on `model`'s tensors (shared, not copied)."""
    with torch.device("meta"):
        other = module.ConditionTransformer(config_as_of(module.GPTConfig, model.config))
    other.load_state_dict(model.state_dict(), assign=True)
    for name, buffer in model.named_buffers():  # the RoPE tables are not in the state dict
        owner, _, leaf = name.rpartition(".")
        setattr(other.get_submodule(owner), leaf, buffer)
    return other.eval()


class StepClock:
    """Wraps a module's RowPicker.pick to stamp each pick and keep the logits it was given."""

    def __init__(self, module):
        self.stamps, self.logits, self.keep = [], [], False
        original = module.RowPicker.pick

        def pick(picker, logits, step):
            self.stamps.append(time.perf_counter())
            if self.keep:
                self.logits.append(logits.clone())
            return original(picker, logits, step)

        module.RowPicker.pick = pick

    def steps_s(self, warmup: int) -> list[float]:
        return [b - a for a, b in zip(self.stamps[warmup:], self.stamps[warmup + 1 :])]


def sample(model, cond, args, guidance: float, num_tokens: int) -> torch.Tensor:
    one = lambda v, dtype: torch.full((1,), v, dtype=dtype)  # noqa: E731  (as pipeline.draw passes them)
    uniforms = torch.rand(1, num_tokens, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return model.sample(cond, num_tokens=num_tokens, uniforms=uniforms, guidance_scale=one(guidance, torch.float32),
                        top_k=one(args.top_k, torch.long), top_p=one(args.top_p, torch.float32),
                        temperature=one(args.temperature, torch.float32))  # fmt: skip


class MachineLoad:
    """What else used the CPUs while a block of timings ran: other processes' share of all cores
    (/proc/stat busy time less this process's own), and the hypervisor's steal time."""

    def __enter__(self):
        self.start = (self._stat(), os.times(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        (busy0, steal0), t0, w0 = self.start
        (busy1, steal1), t1, wall = self._stat(), os.times(), time.perf_counter() - w0
        tick, cores = os.sysconf("SC_CLK_TCK"), os.cpu_count()
        own = (t1.user + t1.system) - (t0.user + t0.system)
        self.others = max(0.0, ((busy1 - busy0) / tick - own) / (wall * cores))
        self.steal = (steal1 - steal0) / tick / (wall * cores)

    @staticmethod
    def _stat() -> tuple[int, int]:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
        return user + nice + system + irq + softirq, steal

    def __str__(self) -> str:
        return f"other processes {self.others:.0%} of the cores, steal {self.steal:.0%}"


def bandwidth(repeats: int) -> tuple[float, float]:
    """(copy GB/s counting read + written bytes, read GB/s of a sum), best of `repeats`, 1 GiB float32."""
    src = torch.ones(2**28)
    dst = torch.empty_like(src)
    dst.copy_(src), src.sum()  # touch every page first
    copy_s, read_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        copy_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        src.sum()
        read_s.append(time.perf_counter() - start)
    gib = src.numel() * src.element_size()
    return 2 * gib / min(copy_s) / 1e9, gib / min(read_s) / 1e9


def step_weight_bytes(model) -> int:
    """Parameter bytes one cached step must read (see the module docstring)."""
    blocks = sum(p.numel() * p.element_size() for p in model.blocks.parameters())
    final = sum(p.numel() * p.element_size() for p in (*model.ln_f.parameters(), model.head.weight))
    rows = 2 * model.config.n_embd * model.tok_emb.weight.element_size()  # one token row, one position row
    return blocks + final + rows


def kv_bytes(model, rows: int, positions: list[int]) -> float:
    """Mean bytes of cached keys and values a step reads, over the steps at `positions`."""
    cfg = model.config
    per_position = 2 * cfg.n_layer * rows * cfg.n_embd * model.tok_emb.weight.element_size()
    return per_position * statistics.mean(p + 1 for p in positions)


def matmul_replay_s(model, rows: int, repeats: int = 200) -> float:
    """Seconds per step of the step's matrix products alone: the same shapes, the same weights."""
    weights = [m.weight for block in model.blocks for m in (block.attn.qkv, block.attn.proj, block.mlp[0], block.mlp[2])]
    weights.append(model.head.weight)
    inputs = [torch.randn(rows, w.shape[1], dtype=w.dtype) for w in weights]
    products = [tree_gpt.decode_product(w, None) for w in weights]  # the kernels the sampler's step runs
    best = float("inf")
    with torch.inference_mode():  # as the sampler runs
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats):
                for x, product in zip(inputs, products):
                    product(x)
            best = min(best, (time.perf_counter() - start) / repeats)
    return best


def kernel_ceilings(model, rows: int, passes: int = 3) -> dict:
    """GB/s of weights through the step's matrix products alone (every block matrix and the head,
    the model's own weights), as the sampler runs them and in three other forms, each with whether
    its results are bit-identical to the sampler's. Row halves on two Python threads (torch on 1
    thread each) would need the process's thread settings changed: measured here, not used."""
    from concurrent.futures import ThreadPoolExecutor

    weights = [m.weight for block in model.blocks for m in (block.attn.qkv, block.attn.proj, block.mlp[0], block.mlp[2])]
    weights.append(model.head.weight)
    nbytes = sum(w.numel() * w.element_size() for w in weights)
    inputs = [torch.randn(rows, w.shape[1], dtype=w.dtype) for w in weights]
    pool = ThreadPoolExecutor(2)

    def halves(x, w):
        top, bottom = pool.submit(F.linear, x, w[: w.shape[0] // 2]), pool.submit(F.linear, x, w[w.shape[0] // 2 :])
        return torch.cat([top.result(), bottom.result()], dim=1)

    sampler_products = {id(w): tree_gpt.decode_product(w, None) for w in weights}  # made once, as the sampler does
    forms = {"the sampler's (gpt.decode_product: oneDNN from LARGE_PRODUCT weights, else mm)": lambda x, w: sampler_products[id(w)](x),
             "F.linear (MKL's mm)": F.linear, "W @ x.T": lambda x, w: (w @ x.t()).t(),
             "F.linear on row halves, 2 Python threads": halves}  # fmt: skip
    out, threads = {}, torch.get_num_threads()
    with torch.inference_mode():
        reference = [sampler_products[id(w)](x) for x, w in zip(inputs, weights)]
        for name, form in forms.items():
            if form is halves:
                torch.set_num_threads(1)
            same = all(torch.equal(form(x, w), r) for x, w, r in zip(inputs, weights, reference))
            best = float("inf")
            for _ in range(passes):
                start = time.perf_counter()
                for x, w in zip(inputs, weights):
                    form(x, w)
                best = min(best, time.perf_counter() - start)
            torch.set_num_threads(threads)
            out[name] = (nbytes / best / 1e9, same)
    pool.shutdown()
    return out


def profile_shares(model, cond, args, guidance: float, num_tokens: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    sample(model, cond, args, guidance, num_tokens)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        sample(model, cond, args, guidance, num_tokens)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
    attn = sum(e.self_cpu_time_total for e in events if "flash_attention" in e.key or "_scaled_dot_product_attention_math" in e.key)
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    return {"matmul": mm / total, "attention": attn / total, "rest": 1 - (mm + attn) / total, "ops_per_step": ops / num_tokens}


def time_scale(name: str, impls: dict, args) -> None:
    cfg = load_config(GPTTrainConfig, ROOT / SCALES[name]).model
    torch.manual_seed(0)
    start = time.perf_counter()
    model = tree_gpt.ConditionTransformer(cfg).eval()
    models = {label: (model if module is tree_gpt else same_weights(module, model)) for label, (module, _) in impls.items()}
    cond = F.normalize(torch.randn(1, cfg.cond_dim), dim=-1)
    n_params = sum(p.numel() for p in model.parameters())
    repeats = args.repeats or (5 if name == "demo" else 2)
    num_tokens = args.warmup + args.steps + 1
    print(f"\n## {name}: {SCALES[name]}: {cfg.n_layer} layers × {cfg.n_embd}, {cfg.block_size} tokens, {cfg.vocab_size} codes, "
          f"{n_params / 1e6:.1f}M parameters ({time.perf_counter() - start:.1f} s to build); {args.steps} steps timed after "
          f"{args.warmup}, {repeats} repeats; top_k {args.top_k}, top_p {args.top_p}, temperature {args.temperature}")  # fmt: skip
    if name == "paper":
        bw_before = bandwidth(args.bw_repeats)
    results = {}
    load = MachineLoad().__enter__()
    for guidance in args.guidance:
        rows = 2 if guidance != 1 else 1
        times = {label: [] for label in impls}
        tokens, logits = {}, {}
        for rep in range(repeats):
            for label, (_, clock) in impls.items():
                clock.stamps.clear()
                clock.keep = rep == 0
                clock.logits = []
                out = sample(models[label], cond, args, guidance, num_tokens)
                times[label] += clock.steps_s(args.warmup)
                if rep == 0:
                    tokens[label], logits[label] = out, clock.logits
        for label in impls:
            results[(guidance, label)] = statistics.median(times[label])
        labels = list(impls)
        same = all(torch.equal(tokens[labels[0]], tokens[b]) for b in labels[1:]) and all(
            all(torch.equal(x, y) for x, y in zip(logits[labels[0]], logits[b], strict=True)) for b in labels[1:])  # fmt: skip
        line = ", ".join(f"{label} {results[(guidance, label)] * 1e3:.3f} ms/step" for label in labels)
        if len(labels) == 2:
            line += f" (before / after {results[(guidance, labels[0])] / results[(guidance, labels[1])]:.2f}x)"
            line += f"; tokens and logits bit-identical at every step: {same}"
        print(f"guidance {guidance:g} ({rows} row{'s' if rows > 1 else ''}): {line}")
        if name == "paper":
            weights = step_weight_bytes(model)
            positions = list(range(cfg.n_prefix + args.warmup, cfg.n_prefix + args.warmup + args.steps))
            kv = kv_bytes(model, rows, positions)
            for label in labels:
                results[(guidance, label, "GB/s")] = weights / results[(guidance, label)] / 1e9
            print(f"  bytes read per step: weights {weights / 1e9:.3f} GB (KV cache {kv / 1e6:.1f} MB more at these positions); "
                  + ", ".join(f"{label} {results[(guidance, label, 'GB/s')]:.1f} GB/s" for label in labels))  # fmt: skip
            if args.kernels:
                for form, (gbs, same) in kernel_ceilings(model, rows).items():
                    print(f"  matrix products alone, {form}: {gbs:.1f} GB/s, bit-identical to the sampler's: {same}")
        if name == "demo" and not args.no_profile:
            replay = matmul_replay_s(model, rows)
            for label in labels:
                shares = profile_shares(models[label], cond, args, guidance, num_tokens)
                print(f"  {label}: profiler: matmul {shares['matmul']:.0%}, attention {shares['attention']:.0%}, "
                      f"rest {shares['rest']:.0%} of self CPU time, {shares['ops_per_step']:.0f} aten calls per step (nested ones included); "
                      f"replayed matmuls alone {replay * 1e3:.3f} ms = {replay / results[(guidance, label)]:.0%} of the step, "
                      f"so {1 - replay / results[(guidance, label)]:.0%} outside them")  # fmt: skip
    load.__exit__()
    print(f"  while timing: {load}")
    if name == "paper":
        bw_after = bandwidth(args.bw_repeats)
        copy_bw, read_bw = max(bw_before[0], bw_after[0]), max(bw_before[1], bw_after[1])
        print(f"  machine bandwidth, 1 GiB float32, best of {args.bw_repeats} before and after the timings: copy {copy_bw:.1f} GB/s "
              f"(read + written; {bw_before[0]:.1f} before, {bw_after[0]:.1f} after), read (sum) {read_bw:.1f} GB/s "
              f"({bw_before[1]:.1f} before, {bw_after[1]:.1f} after)")  # fmt: skip
        for guidance in args.guidance:
            for label in impls:
                gbs = results[(guidance, label, "GB/s")]
                print(f"  guidance {guidance:g}, {label}: {gbs:.1f} GB/s of weights = {gbs / read_bw:.0%} of the read bandwidth "
                      f"(goal 50 %), {gbs / copy_bw:.0%} of the copy figure")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", choices=list(SCALES), default=list(SCALES))
    parser.add_argument("--before", default="HEAD", help="git revision of the 'before' sampler; 'none' times the working tree only")
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.5, 1.0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=0, help="sampler calls per setting and sampler (0: 5 at demo, 2 at paper scale)")
    parser.add_argument("--top-k", type=int, default=1, help="the demo run's own settings by default: guidance 1.5, top-k 1")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--bw-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--kernels", action="store_true", help="paper scale: also the matrix products alone, in other forms")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    impls = {}
    if args.before != "none":
        before = load_revision(args.before)
        impls[f"before ({args.before})"] = (before, StepClock(before))
    impls["after (tree)"] = (tree_gpt, StepClock(tree_gpt))
    cpu = cpu_name()
    print(f"# bench_sampler_steps: {cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")  # fmt: skip
    for name in args.scales:
        time_scale(name, impls, args)


if __name__ == "__main__":
    main()
