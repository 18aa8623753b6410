import numpy as np
import torch

from clipgen.eval.frechet import FeatureStats, frechet_distance, frechet_distance_of


def _stats(x: torch.Tensor) -> FeatureStats:
    stats = FeatureStats(x.shape[1])
    for chunk in x.split(100):  # accumulation in pieces equals one pass
        stats.add(chunk)
    return stats


def test_same_set_is_zero_and_noise_grows_the_distance():
    torch.manual_seed(0)
    real = torch.randn(2000, 16) @ torch.randn(16, 16)
    assert abs(frechet_distance_of(_stats(real), _stats(real))) < 1e-6
    distances = [frechet_distance_of(_stats(real), _stats(real + s * torch.randn_like(real))) for s in (0.1, 0.5, 1.0)]
    assert 0 < distances[0] < distances[1] < distances[2]


def test_matches_the_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 0.0])
    c1, c2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 1.0])
    # ||Δμ||² + Σ (σ1 - σ2)² for diagonal covariances
    expected = 1.0 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert abs(frechet_distance(mu1, c1, mu2, c2) - expected) < 1e-8
