"""Muon for the transformer's hidden matrices, AdamW for everything else, in one optimizer.

Muon (Jordan et al., 2024, "Muon: an optimizer for hidden layers in neural networks") takes the
momentum of a weight matrix's gradient and replaces it by the nearest semi-orthogonal matrix (all
singular values ≈ 1), computed with a few Newton–Schulz iterations, so every direction of the
update moves at the same speed instead of the few dominant ones. On small GPTs it reaches a given
loss in markedly fewer steps than AdamW, which is what a CPU budget needs. It is meant for 2-D
matrices inside the network; embeddings, the output head, gains and the condition projections
keep AdamW (the recipe's split). One optimizer object holds both kinds of group, so checkpoints
and the learning-rate schedule treat it like any other.
"""

from __future__ import annotations

import torch
from torch import nn

# the quintic iteration's coefficients from the Muon write-up: they push every singular value
# into roughly [0.7, 1.2] within five steps, which is as orthogonal as the update needs to be
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrices: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately semi-orthogonal matrices with the row and column spaces of `matrices`
    ([..., rows, cols]; a stack is done in one batched pass)."""
    a, b, c = _NS_COEFFICIENTS
    x = matrices.float()
    tall = x.shape[-2] > x.shape[-1]
    if tall:  # iterate on the smaller Gram matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # singular values ≤ 1, where the iteration converges
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if tall else x).to(matrices.dtype)


class MuonWithAdamW(torch.optim.Optimizer):
    """Groups with `muon=True` take Muon steps (lr, momentum, and weight_decay if the group sets
    one: make_optimizer does not); the rest take AdamW steps (lr, betas, eps, weight_decay)."""

    def __init__(self, groups: list[dict], betas=(0.9, 0.95), eps: float = 1e-8, momentum: float = 0.95):
        for group in groups:
            group.setdefault("muon", False)
        super().__init__(groups, dict(betas=tuple(betas), eps=eps, momentum=momentum, weight_decay=0.0))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
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
        return loss

    def _muon_step(self, params: list[torch.Tensor], group: dict) -> None:
        momentum = group["momentum"]
        by_shape: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for param in params:
            state = self.state[param]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(param)
            buf = state["momentum_buffer"]
            buf.mul_(momentum).add_(param.grad)
            by_shape.setdefault(tuple(param.shape), []).append((param, param.grad.add(buf, alpha=momentum)))  # Nesterov
        for (rows, cols), pairs in by_shape.items():
            # matrices of one shape are orthogonalised together: one batched pass instead of many
            # small ones, which is most of Muon's cost on a CPU
            updates = orthogonalize(torch.stack([update for _, update in pairs]))
            # an orthogonal update of a tall matrix has smaller entries; rescale so every matrix
            # moves by about the same amount per unit of learning rate whatever its shape
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


def is_hidden_matrix(name: str, param: nn.Parameter) -> bool:
    """The matrices Muon is for: the transformer blocks' 2-D weights."""
    return param.dim() == 2 and name.startswith("blocks.")
