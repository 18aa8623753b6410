"""How well a VQGAN reconstructs held-out images: PSNR, codebook usage, Fréchet distance."""

from __future__ import annotations

from typing import Iterable

import torch

from clipgen.engine.dist import all_reduce_sum
from clipgen.engine.trainer import autocast_context
from clipgen.eval.features import FeatureFn
from clipgen.eval.frechet import FeatureStats, frechet_distance_of


def psnr_per_image(x: torch.Tensor, xrec: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [-1, 1], measured on the [0, 1] scale, one value per image."""
    mse = ((x.float() - xrec.float().clamp(-1, 1)) / 2).pow(2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


@torch.no_grad()
def evaluate_reconstruction(
    model,
    batches: Iterable[dict],
    device: torch.device,
    features: FeatureFn,
    feature_name: str,
    autocast_dtype: torch.dtype | None = None,
    max_images: int = 0,
) -> dict[str, float]:
    """Statistics over every rank's share of the held-out images (summed across ranks)."""
    n_embed, size = model.config.n_embed, model.config.resolution
    psnr_sum = torch.zeros((), dtype=torch.float64)
    count = torch.zeros((), dtype=torch.float64)
    code_counts = torch.zeros(n_embed, dtype=torch.float64)
    # sized up front: a rank whose share of the shards is empty still joins every reduction
    dim = features(torch.zeros(1, 3, size, size, device=device)).shape[1]
    real_stats, fake_stats = FeatureStats(dim), FeatureStats(dim)
    for batch in batches:
        x = batch["image"].to(device)
        with autocast_context(device, autocast_dtype):
            xrec, quantized = model(x)
        xrec = xrec.float().clamp(-1, 1)
        psnr_sum += psnr_per_image(x, xrec).sum().double().cpu()
        count += x.shape[0]
        code_counts += torch.bincount(quantized.indices.flatten(), minlength=n_embed).double().cpu()
        real_stats.add(features(x))
        fake_stats.add(features(xrec))
        if max_images and count.item() >= max_images:
            break
    for tensor in (psnr_sum, count, code_counts):
        all_reduce_sum(tensor)
    if count.item() == 0:
        raise ValueError("the held-out shards yielded no images")
    metrics = {
        "psnr": (psnr_sum / count).item(),
        "codebook_usage_pct": 100.0 * (code_counts > 0).double().mean().item(),
        "images": count.item(),
    }
    real_stats.all_reduce()
    fake_stats.all_reduce()
    if real_stats.count.item() >= 2:
        metrics[f"fd_{feature_name}"] = frechet_distance_of(real_stats, fake_stats)
    return metrics
