"""Vector quantisation of the encoder's feature map into codebook indices.

Two fixes for what goes wrong in taming's `VectorQuantizer2` are options here:
- The β bug: taming (legacy=True, which its checkpoints and HFAiLab/clip-gen use) weights the
  codebook term by β and the commitment term by 1. The VQ-VAE paper's loss is
  codebook + β·commitment; that is the default here, `legacy_beta=True` reproduces old runs.
- Codebook collapse: `l2_norm=True` compares l2-normalised codes (ViT-VQGAN, LlamaGen: low-dim
  codes reach ~97% usage of 16384), and dead-code restart moves codes that went unused for a
  window onto recent encoder outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerConfig:
    beta: float = 0.25  # weight of the commitment term
    legacy_beta: bool = False  # taming's placement: β on the codebook term instead
    l2_norm: bool = False  # compare and look up l2-normalised codes (LlamaGen style)
    restart_every: int = 0  # steps between dead-code restarts; 0 turns restarts off
    restart_min_uses: int = 1  # a code used fewer times since the last restart is dead
    # Where a dead code restarts. "uniform": any recent encoder output, so mostly the commonest
    # content (a plain background), which then gets dozens of interchangeable codes and makes the
    # token sequences needlessly hard to model. "error": distinct outputs drawn with probability
    # proportional to their squared distance from the nearest live code (as k-means++ seeds, but
    # in one draw), so new codes go to the content the codebook represents worst.
    restart_pick: Literal["uniform", "error"] = "uniform"


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, D, h, w], straight-through: gradients flow to the encoder
    loss: torch.Tensor  # codebook + commitment loss, a scalar
    indices: torch.Tensor  # [B, h, w] int64


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int, config: QuantizerConfig | None = None):
        super().__init__()
        self.config = config or QuantizerConfig()
        self.n_embed, self.embed_dim = n_embed, embed_dim
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)
        # Restart bookkeeping lives outside the state_dict: DDP would otherwise overwrite each
        # rank's counts with rank 0's, and taming-format checkpoints stay key-for-key identical.
        self._uses = torch.zeros(n_embed, dtype=torch.long)
        self._recent_inputs: torch.Tensor | None = None

    def codebook(self) -> torch.Tensor:
        weight = self.embedding.weight
        return F.normalize(weight, dim=-1) if self.config.l2_norm else weight

    def nearest(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of `z_flat` [N, D]."""
        codes = self.codebook()
        # ||z||² + ||e||² − 2 z·e, as taming computes it, so argmin ties break the same way.
        distances = (
            z_flat.pow(2).sum(dim=1, keepdim=True)
            + codes.pow(2).sum(dim=1)
            - 2 * z_flat @ codes.t()
        )
        return distances.argmin(dim=1)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        # Under bf16 autocast the distance matmul would run in bf16 and pick wrong codes
        # (measured: 6% of indices with 16384 8-d codes); the codebook lookup stays float32.
        with torch.autocast(z.device.type, enabled=False):
            return self._quantize(z.float())

    def _quantize(self, z: torch.Tensor) -> QuantizerOutput:
        b, d, h, w = z.shape
        z = z.permute(0, 2, 3, 1)
        if self.config.l2_norm:
            z = F.normalize(z, dim=-1)
        z_flat = z.reshape(-1, d)
        indices = self.nearest(z_flat)
        z_q = self.codebook()[indices].view_as(z)

        codebook_term = F.mse_loss(z_q, z.detach())
        commitment_term = F.mse_loss(z, z_q.detach())
        beta = self.config.beta
        if self.config.legacy_beta:
            loss = beta * codebook_term + commitment_term
        else:
            loss = codebook_term + beta * commitment_term

        if self.training:
            self._remember(z_flat.detach(), indices)
        z_q = z + (z_q - z).detach()  # straight-through estimator
        return QuantizerOutput(z_q.permute(0, 3, 1, 2).contiguous(), loss, indices.view(b, h, w))

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """[B, h, w] indices -> [B, D, h, w] codes (what `forward` would have quantised to)."""
        return self.codebook()[indices].permute(0, 3, 1, 2).contiguous()

    def one_hot_to_codes(self, weights: torch.Tensor) -> torch.Tensor:
        """[B, h, w, V] one-hot (or soft) weights over the first V codes -> [B, D, h, w] codes:
        `indices_to_codes` as a product, so gradients reach the weights (the CLIP loss). In float32
        whatever the autocast: a bf16 product would round the codes, so one-hot weights would no
        longer give exactly the codes `indices_to_codes` looks up."""
        with torch.autocast(weights.device.type, enabled=False):
            codes = weights.float() @ self.codebook()[: weights.shape[-1]].float()
        return codes.permute(0, 3, 1, 2)

    # --- dead-code restart -------------------------------------------------------------------

    def _remember(self, z_flat: torch.Tensor, indices: torch.Tensor) -> None:
        if self.config.restart_every <= 0:
            return
        self._uses = self._uses.to(indices.device)
        self._uses += torch.bincount(indices, minlength=self.n_embed)
        self._recent_inputs = z_flat

    def total_uses(self) -> torch.Tensor:
        """Code use counts since the last restart, summed over ranks (a collective call)."""
        uses = self._uses.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(uses)
        return uses

    def load_uses(self, uses: torch.Tensor, is_main: bool) -> None:
        """Restore counts saved by `total_uses`: rank 0 holds them all, so the next sum is right."""
        self._uses = uses.clone() if is_main else torch.zeros_like(uses)

    @torch.no_grad()
    def restart_dead_codes(self) -> torch.Tensor:
        """Move every code used fewer than `restart_min_uses` times since the last call onto a
        random recent encoder output; returns the indices of the moved codes. Call at the same
        step on every rank: the use counts are summed across ranks and rank 0's choice is
        broadcast, so the codebooks stay identical."""
        if self._recent_inputs is None:
            return torch.empty(0, dtype=torch.long)
        distributed = dist.is_available() and dist.is_initialized()
        dead = torch.nonzero(self.total_uses() < self.config.restart_min_uses).flatten()
        if len(dead) > 0:
            inputs = self._recent_inputs
            fresh = inputs[self._restart_picks(inputs, dead)].to(self.embedding.weight.dtype)
            if distributed:
                dist.broadcast(fresh, src=0)
            self.embedding.weight.data[dead] = fresh
        self._uses.zero_()
        return dead

    def _restart_picks(self, inputs: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
        if self.config.restart_pick == "uniform" or len(dead) == self.n_embed:
            return torch.randint(len(inputs), (len(dead),), device=inputs.device)
        live = torch.ones(self.n_embed, dtype=torch.bool, device=inputs.device)
        live[dead.to(inputs.device)] = False
        error = torch.cdist(inputs, self.codebook()[live].to(inputs)).min(dim=1).values.pow(2)
        if error.sum() <= 0:  # every output already sits on a live code
            return torch.randint(len(inputs), (len(dead),), device=inputs.device)
        # distinct outputs where there are enough, so that restarted codes do not pile up on one
        return torch.multinomial(error, len(dead), replacement=int((error > 0).sum()) < len(dead))


def codebook_stats(indices: torch.Tensor, n_embed: int) -> dict[str, float]:
    """Usage (% of codes that appear) and perplexity (exp entropy) of a batch of indices."""
    counts = torch.bincount(indices.flatten(), minlength=n_embed).float()
    probs = counts / counts.sum()
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    return {
        "usage_pct": 100.0 * (counts > 0).float().mean().item(),
        "perplexity": entropy.exp().item(),
    }
