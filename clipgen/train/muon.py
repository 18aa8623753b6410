"""Muon for the transformer's hidden matrices, AdamW for everything else, behind one optimizer.

Muon (Jordan et al., 2024, "Muon: an optimizer for hidden layers in neural networks") takes the
momentum of a weight matrix's gradient and replaces it by the nearest semi-orthogonal matrix (all
singular values ≈ 1), computed with a few Newton–Schulz iterations, so every direction of the
update moves at the same speed instead of the few dominant ones. On small GPTs it reaches a given
loss in markedly fewer steps than AdamW, which is what a CPU budget needs. It is meant for 2-D
matrices inside the network; embeddings, the output head, gains and the condition projections
keep AdamW (the recipe's split).

The steps are torch's: torch.optim.Muon (five quintic Newton–Schulz steps in bf16) for the
matrices, torch.optim.AdamW for the rest. clipgen had its own Muon (fp32, same-shape matrices
orthogonalised as one batch) until bench/bench_muon.py found torch's as accurate on shapes-zh and
not slower (BENCHMARKS.md). Where bf16 is not native (an AVX2-only CPU), torch's bf16 steps are
emulated and made the shapes32 training step 4.2x slower: there Float32Muon runs the same update
with its Newton–Schulz steps in float32. MuonAndAdamW puts Muon and AdamW behind one optimizer's
face, so the trainer, checkpoints and resume treat it like any other optimizer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from clipgen.engine.trainer import native_bf16


class MuonAndAdamW:
    """torch.optim.Muon over the groups with `muon=True` (lr, momentum; no weight decay), and
    torch.optim.AdamW over the rest (lr, betas, weight_decay). `param_groups` lists both kinds,
    Muon's first, as the same dicts the two optimizers read, so setting a group's lr sets it;
    state_dict() is torch's format over all the groups in that order, one checkpoint entry.
    Not a torch.optim.Optimizer: torch's lr_scheduler classes refuse it (clipgen sets lr itself)."""

    def __init__(self, groups: list[dict], betas=(0.9, 0.95), momentum: float = 0.95, fused: bool = False):
        muon_groups = [{**g, "muon": True} for g in groups if g.get("muon")]
        adamw_groups = [{**g, "muon": False} for g in groups if not g.get("muon")]
        # the recipe: Nesterov momentum, no decay on the matrices, and the update scaled by
        # sqrt(max(1, rows / cols)) ("original"), so tall and wide matrices move alike per unit lr
        devices = {p.device for g in muon_groups for p in g["params"]}
        muon_class = torch.optim.Muon if all(native_bf16(d) for d in devices) else Float32Muon
        self.muon = muon_class(muon_groups, momentum=momentum, nesterov=True, weight_decay=0.0, adjust_lr_fn="original")
        self.adamw = torch.optim.AdamW(adamw_groups, betas=tuple(betas), fused=fused)

    @property
    def param_groups(self) -> list[dict]:
        return self.muon.param_groups + self.adamw.param_groups

    @torch.no_grad()
    def step(self, closure=None):
        loss = _loss_of(closure)
        self.muon.step()
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        muon, adamw = self.muon.state_dict(), self.adamw.state_dict()
        offset = sum(len(g["params"]) for g in muon["param_groups"])  # AdamW's parameters are numbered after Muon's
        return {
            "state": {**muon["state"], **{i + offset: s for i, s in adamw["state"].items()}},
            "param_groups": muon["param_groups"] + [{**g, "params": [i + offset for i in g["params"]]} for g in adamw["param_groups"]],
        }

    def load_state_dict(self, state: dict) -> None:
        groups, n = state["param_groups"], len(self.muon.param_groups)
        if [bool(g.get("muon")) for g in groups] != [bool(g["muon"]) for g in self.param_groups]:
            raise ValueError("the saved optimizer state has other Muon / AdamW groups than this model")
        offset = sum(len(g["params"]) for g in groups[:n])
        muon_state = {i: s for i, s in state["state"].items() if i < offset}
        muon_groups = [self._from_clipgen_muon(saved, current, muon_state) for saved, current in zip(groups[:n], self.muon.param_groups)]
        self.muon.load_state_dict({"state": muon_state, "param_groups": muon_groups})
        self.adamw.load_state_dict({
            "state": {i - offset: s for i, s in state["state"].items() if i >= offset},
            "param_groups": [{**g, "params": [i - offset for i in g["params"]]} for g in groups[n:]],
        })

    @staticmethod
    def _from_clipgen_muon(saved: dict, current: dict, state: dict) -> dict:
        """A Muon group as torch's reads it. Checkpoints from before torch's Muon (clipgen's own,
        whose groups lack `nesterov`) kept a momentum sum where torch keeps an average: the
        buffers are scaled by (1 - momentum), and torch's own settings filled in."""
        if "nesterov" in saved:
            return saved
        for i in saved["params"]:
            if "momentum_buffer" in state.get(i, {}):
                state[i] = {"momentum_buffer": state[i]["momentum_buffer"] * (1 - saved["momentum"])}
        kept = {key: saved[key] for key in ("lr", "momentum", "weight_decay", "params")}
        return {**{k: v for k, v in current.items() if k != "params"}, **kept}


class Float32Muon(torch.optim.Muon):
    """torch.optim.Muon's update with the Newton–Schulz steps in float32 instead of bf16: its groups,
    state (`momentum_buffer`) and checkpoints are torch's, and its updates equal torch's up to bf16
    rounding. For devices without native bf16, where torch's bf16 products are emulated (BENCHMARKS.md,
    "The demo": the shipped step 70 -> 293 ms with oneDNN held to AVX2). Nesterov or plain momentum,
    decoupled weight decay, and the "original" lr adjustment only (what MuonAndAdamW sets)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = _loss_of(closure)
        for group in self.param_groups:
            if group["adjust_lr_fn"] not in (None, "original"):
                raise ValueError(f"Float32Muon supports adjust_lr_fn 'original' only, not {group['adjust_lr_fn']!r}")
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad)
                buf = state["momentum_buffer"]
                buf.lerp_(grad, 1 - group["momentum"])
                update = grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                update = _orthogonalise_float32(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
                rows, cols = param.shape[:2]
                param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(update, alpha=-group["lr"] * math.sqrt(max(1.0, rows / cols)))
        return loss


def _loss_of(closure):
    """torch's optimizer convention: `closure` re-evaluates the loss (with gradients on) when given."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _orthogonalise_float32(matrix: torch.Tensor, coefficients, steps: int, eps: float) -> torch.Tensor:
    """The quintic Newton–Schulz iteration torch.optim.Muon runs, in float32: scaled to norm ≤ 1,
    worked on the wide orientation (fewer rows: the smaller Gram matrix), then turned back."""
    a, b, c = coefficients
    tall = matrix.shape[0] > matrix.shape[1]
    x = matrix.float().T if tall else matrix.float()
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.T if tall else x).to(matrix.dtype)


def is_hidden_matrix(name: str, param: nn.Parameter) -> bool:
    """The matrices Muon is for: the transformer blocks' 2-D weights."""
    return param.dim() == 2 and name.startswith("blocks.")
