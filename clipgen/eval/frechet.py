"""Fréchet distance between two Gaussians fitted to feature sets (the statistic behind FID).

Features are accumulated as running sums so that ranks can add their partial statistics with
one all-reduce, and no rank has to hold every feature vector.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from clipgen.engine.dist import all_reduce_sum


class FeatureStats:
    """Running count, sum and sum of outer products of feature vectors, in float64."""

    def __init__(self, dim: int):
        self.count = torch.zeros((), dtype=torch.float64)
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def add(self, features: torch.Tensor) -> None:
        f = features.detach().to(torch.float64).cpu().flatten(1)
        self.count += f.shape[0]
        self.total += f.sum(0)
        self.outer += f.t() @ f

    def all_reduce(self) -> "FeatureStats":
        for tensor in (self.count, self.total, self.outer):
            all_reduce_sum(tensor)
        return self

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.count.item()
        if n < 2:
            raise ValueError("a Fréchet distance needs at least two feature vectors per set")
        mean = self.total / n
        cov = (self.outer - n * torch.outer(mean, mean)) / (n - 1)
        return mean.numpy(), cov.numpy()


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||² + Tr(C1 + C2 - 2 (C1 C2)^½)."""
    covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
        # a near-singular product (few samples, flat features): regularise, as pytorch-fid does
        eps = 1e-6 * np.eye(cov1.shape[0])
        covmean = scipy.linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


def frechet_distance_of(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(*a.mean_cov(), *b.mean_cov())
