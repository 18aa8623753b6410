"""The VQGAN training objective: L1 + LPIPS reconstruction, VQ loss, and a PatchGAN hinge loss.

The GAN term is balanced against the reconstruction with taming's adaptive weight
||∇nll|| / (||∇g|| + 1e-4), both gradients taken at the decoder's last layer, clamped to
[0, 1e4] and scaled by `disc_weight`; it is zero before `disc_start`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossConfig:
    l1_weight: float = 1.0
    l2_weight: float = 0.0  # an MSE term; PSNR-oriented runs on flat synthetic images like it
    # Extra weight on high-contrast detail: each pixel's L1/L2 error is scaled by
    # 1 + edge_weight * (the target's colour range over the pixel's 3x3 neighbourhood, in [0, 1]).
    # Flat regions dominate a per-pixel mean, so without it a small object's outline is the
    # cheapest thing to blur; LPIPS and the GAN fix that too, at a far higher price per step.
    edge_weight: float = 0.0
    perceptual_weight: float = 1.0  # 0 runs without LPIPS (and needs no weights file)
    perceptual_weights: str = ""  # local safetensors file from `clipgen lpips-weights`
    codebook_weight: float = 1.0
    disc_weight: float = 0.75
    disc_start: int = 0  # optimizer step at which the GAN terms switch on
    disc_layers: int = 3
    disc_channels: int = 64


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_gan_weight(nll: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = nll_grad.norm() / (g_grad.norm() + 1e-4)
    return weight.clamp(0.0, 1e4).detach()


def local_contrast(x: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] in [0, 1]: the largest per-channel max-min over each pixel's 3x3 neighbourhood,
    for images in [-1, 1]."""
    high = F.max_pool2d(x, 3, stride=1, padding=1)
    low = -F.max_pool2d(-x, 3, stride=1, padding=1)
    return ((high - low) / 2).amax(dim=1, keepdim=True)


def reconstruction_loss(cfg: LossConfig, x: torch.Tensor, xrec: torch.Tensor, lpips) -> tuple[torch.Tensor, dict]:
    """Mean per-pixel reconstruction loss and its parts (for logging)."""
    x, xrec = x.float(), xrec.float()
    # the logged l1 / l2 stay plain means, comparable across runs; the weighting enters the loss
    weight = 1.0 + cfg.edge_weight * local_contrast(x) if cfg.edge_weight > 0 else None
    l1 = (x - xrec).abs()
    parts = {"l1": l1.mean()}
    loss = cfg.l1_weight * (l1 if weight is None else weight * l1).mean()
    if cfg.l2_weight > 0:
        l2 = (x - xrec).pow(2)
        parts["l2"] = l2.mean()
        loss = loss + cfg.l2_weight * (l2 if weight is None else weight * l2).mean()
    if cfg.perceptual_weight > 0:
        parts["lpips"] = lpips(x, xrec).mean()
        loss = loss + cfg.perceptual_weight * parts["lpips"]
    return loss, parts
