"""Optimizer step time of clipgen's former Muon against torch.optim.Muon (+ torch.optim.AdamW for
the rest), and how far apart their updates are for the same gradients.

    python bench/bench_muon.py                  # shapes32 and 8 layers x 512, ~5 min on 2 cores
    python bench/bench_muon.py --sizes shapes32 --processes 5

"ours" is clipgen's own MuonWithAdamW as it was until this comparison replaced it by torch's
(kept below, unchanged, as the reference: fp32 Newton–Schulz, same-shape matrices orthogonalised
as one batch, Muon and AdamW in one torch.optim.Optimizer); "torch" is make_optimizer's
MuonAndAdamW. Both get the same groups (the blocks' 2-D matrices take Muon, the rest AdamW with
the config's decay split). Each kind and job (one size's optimizer rows, or one size's training
step) is timed in a process of its own, ours and torch's alternating, since what ran before in a
process (its allocator, its caches) moved a training step by ±15 %; the figure is the median over
processes. Rows, on fixed random gradients,
`opt.step()` only: the whole optimizer, the matrices alone (ours with its Muon group only against
torch.optim.Muon alone) and the rest alone; then a whole training step (forward, backward,
clipping, optimizer) at the config's batch size.

The numeric check runs both from the same weights on the same fresh gradients for a few steps,
with the settings under which the two are the same method (Nesterov, momentum 0.95, no decay on
the matrices, lr scaled by sqrt(max(1, rows / cols)): torch's adjust_lr_fn="original"), and
prints the relative distance between the two updates of each kind; what remains is torch's
Newton–Schulz in bf16 (ours is fp32) and its momentum buffer being an average rather than a sum,
which the orthogonalisation's normalisation cancels.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipgen.config import load_config  # noqa: E402
from clipgen.models.gpt import ConditionTransformer  # noqa: E402
from clipgen.train.gpt import GPTTrainConfig, make_optimizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the same as torch's


def orthogonalize(matrices: torch.Tensor, steps: int = 5) -> torch.Tensor:
    a, b, c = _NS_COEFFICIENTS
    x = matrices.float()
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if tall else x).to(matrices.dtype)


class MuonWithAdamW(torch.optim.Optimizer):
    """clipgen's former optimizer (clipgen/train/muon.py before torch.optim.Muon took over)."""

    def __init__(self, groups: list[dict], betas=(0.9, 0.95), eps: float = 1e-8, momentum: float = 0.95):
        super().__init__(groups, dict(betas=tuple(betas), eps=eps, momentum=momentum, weight_decay=0.0))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["weight_decay"]:
                for param in params:
                    param.mul_(1 - group["lr"] * group["weight_decay"])
            if group["muon"]:
                self._muon_step(params, group)
            else:
                for param in params:
                    self._adamw_update(param, group)

    def _muon_step(self, params: list[torch.Tensor], group: dict) -> None:
        momentum = group["momentum"]
        by_shape: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for param in params:
            state = self.state[param]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(param)
            buf = state["momentum_buffer"]
            buf.mul_(momentum).add_(param.grad)  # a sum; torch's buffer is an average
            by_shape.setdefault(tuple(param.shape), []).append((param, param.grad.add(buf, alpha=momentum)))  # Nesterov
        for (rows, cols), pairs in by_shape.items():
            updates = orthogonalize(torch.stack([update for _, update in pairs]))
            scale = -group["lr"] * max(1.0, rows / cols) ** 0.5
            for (param, _), update in zip(pairs, updates):
                param.add_(update, alpha=scale)

    def _adamw_update(self, param: torch.Tensor, group: dict) -> None:
        state = self.state[param]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        state["exp_avg"].lerp_(param.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
        step = float(state["step"])
        denom = (state["exp_avg_sq"] / (1 - beta2**step)).sqrt_().add_(group["eps"])
        param.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - beta1**step))


def both(model, base: GPTTrainConfig) -> dict:
    """{"ours": MuonWithAdamW, "torch": make_optimizer's MuonAndAdamW}, over the same groups."""
    theirs = make_optimizer(model, replace(base.optim, optimizer="muon"))
    keys = ("params", "lr", "muon", "weight_decay")
    ours = MuonWithAdamW([{k: g[k] for k in keys} for g in theirs.param_groups], betas=base.optim.betas, momentum=base.optim.muon_momentum)
    return {"ours": ours, "torch": theirs}



def model_for(base: GPTTrainConfig, size: str) -> ConditionTransformer:
    torch.manual_seed(0)
    if size == "shapes32":
        return ConditionTransformer(base.model)
    layers, width = (int(x) for x in size.split("x"))
    # GPT-2's 4x MLP, as these sizes were first measured with (shapes32's own is 2x since 4125b01)
    return ConditionTransformer(replace(base.model, n_layer=layers, n_embd=width, n_head=max(1, width // 64), mlp_ratio=4))


def optimizer_part(model, base: GPTTrainConfig, kind: str, part: str):
    """`kind`'s optimizer over `part` of the groups: all, muon (the matrices), adamw (the rest)."""
    opt = both(model, base)[kind]
    if part == "all":
        return opt
    if kind == "torch":
        return opt.muon if part == "muon" else opt.adamw
    opt.param_groups = [g for g in opt.param_groups if g["muon"] == (part == "muon")]
    return opt


def fill_grads(model, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator) * 1e-2


def median_ms(step, repeats: int, steps: int = 0) -> float:
    """Median ms per call of `step` over `repeats` timed runs of `steps` calls (0: about 0.3 s'
    worth, at least one), after two untimed calls."""
    start = time.perf_counter()
    step()
    step()
    steps = steps or max(1, round(0.6 / (time.perf_counter() - start)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - start) / steps * 1000)
    return statistics.median(times)


def measure(base: GPTTrainConfig, kind: str, job: str, repeats: int) -> dict[str, float]:
    """One process's figures for one kind and one job, "opt:SIZE" (the three optimizer rows) or
    "train:SIZE" (a whole training step): {row name: ms}."""
    what, size = job.split(":")
    if what == "opt":
        rows = {}
        for part in ("all", "muon", "adamw"):
            model = model_for(base, size)
            opt = optimizer_part(model, base, kind, part)
            fill_grads(model, 0)
            rows[f"{size} {part}"] = median_ms(opt.step, repeats)
        return rows
    batch = base.run.batch_size
    cond = torch.randn(batch, base.model.cond_dim)
    tokens = torch.randint(0, base.model.vocab_size, (batch, base.model.block_size))
    drop = torch.rand(batch) < 0.1
    model = model_for(base, size).train()
    opt = both(model, base)[kind]

    def train_step():
        model.loss(cond, tokens, drop).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), base.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return {f"{size} training step, batch {batch}": median_ms(train_step, repeats, steps=10)}


def update_distance(base: GPTTrainConfig, size: str, steps: int) -> dict[str, list[float]]:
    """Per step, ||Δours - Δtorch|| / ||Δours|| over the Muon matrices and over the AdamW rest."""
    models = {"ours": model_for(base, size), "torch": model_for(base, size)}
    opts = {name: both(model, base)[name] for name, model in models.items()}
    muon_ids = {id(p) for g in opts["ours"].param_groups if g["muon"] for p in g["params"]}
    kind = {n: "muon" if id(p) in muon_ids else "adamw" for n, p in models["ours"].named_parameters()}
    distances = {"muon": [], "adamw": []}
    for step in range(steps):
        before = {n: p.detach().clone() for n, p in models["ours"].named_parameters()}
        deltas = {}
        for name, model in models.items():
            fill_grads(model, 100 + step)
            opts[name].step()
            deltas[name] = {n: p.detach() - before[n] for n, p in model.named_parameters()}
        for which in distances:
            diff = sum((deltas["ours"][n] - deltas["torch"][n]).square().sum() for n in kind if kind[n] == which)
            norm = sum(deltas["ours"][n].square().sum() for n in kind if kind[n] == which)
            distances[which].append((diff / norm).sqrt().item())
        # both continue from ours' weights, so each step's distance is that step's alone
        with torch.no_grad():
            for p, q in zip(models["torch"].parameters(), models["ours"].parameters()):
                p.copy_(q)
    return distances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/gpt/shapes32.yaml"))
    parser.add_argument("--sizes", nargs="+", default=["shapes32", "8x512"], help="shapes32, or LAYERSxWIDTH")
    parser.add_argument("--train-step-sizes", nargs="*", default=["shapes32"], help="also time whole training steps")
    parser.add_argument("--processes", type=int, default=3, help="processes per kind, ours and torch's alternating")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row within a process")
    parser.add_argument("--check-steps", type=int, default=5)
    parser.add_argument("--only", nargs=2, metavar=("KIND", "JOB"), help=argparse.SUPPRESS)  # one timing process
    args = parser.parse_args()
    base = load_config(GPTTrainConfig, args.config)
    if args.only:
        print(json.dumps(measure(base, *args.only, args.repeats)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.processes} processes per kind and job")
    jobs = [f"opt:{size}" for size in args.sizes] + [f"train:{size}" for size in args.train_step_sizes]
    figures = {"ours": {}, "torch": {}}  # kind -> row -> ms of each process
    for _ in range(args.processes):
        for job in jobs:
            for kind, rows in figures.items():
                command = [sys.executable, __file__, "--only", kind, job, "--config", args.config, "--repeats", str(args.repeats)]
                done = subprocess.run(command, check=True, capture_output=True, text=True)
                for row, ms in json.loads(done.stdout).items():
                    rows.setdefault(row, []).append(ms)
    print(f"{'row':<34} {'ours ms':>9} {'torch ms':>9} {'torch/ours':>11}   each process's ms, ours | torch")
    for row in figures["ours"]:
        ours, theirs = (statistics.median(figures[kind][row]) for kind in ("ours", "torch"))
        spread = " | ".join(" ".join(f"{ms:.1f}" for ms in figures[kind][row]) for kind in ("ours", "torch"))
        print(f"{row:<34} {ours:>9.2f} {theirs:>9.2f} {theirs / ours:>11.2f}   {spread}")
    for size in args.sizes:
        for which, values in update_distance(base, size, args.check_steps).items():
            print(f"{size}: relative distance of the {which} updates, steps 1..{len(values)}: "
                  + " ".join(f"{v:.2e}" for v in values))  # fmt: skip


if __name__ == "__main__":
    main()
