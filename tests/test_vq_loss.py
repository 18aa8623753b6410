"""The VQGAN reconstruction loss: plain per-pixel terms, and the edge weighting."""

import torch

from clipgen.models.vq_loss import LossConfig, local_contrast, reconstruction_loss


def _square():
    x = torch.full((1, 3, 8, 8), 0.0)
    x[:, 0, 3:5, 3:5] = 1.0  # a 2x2 red square on grey
    return x


def test_local_contrast_marks_the_neighbourhood_of_an_outline_only():
    contrast = local_contrast(_square())[0, 0]
    assert contrast[0, 0] == 0 and contrast[7, 7] == 0  # flat background
    assert contrast[2, 2] == 0.5 and contrast[3, 3] == 0.5  # within one pixel of the square: range 1 of 2
    assert torch.count_nonzero(contrast) == 16  # the 4x4 block around the 2x2 square


def test_edge_weight_scales_errors_near_outlines_and_not_elsewhere():
    target = _square()
    flat_error, edge_error = target.clone(), target.clone()
    flat_error[:, :, 0, 0] += 0.2  # far from the square
    edge_error[:, :, 3, 3] -= 0.2  # on the square
    plain, weighted = LossConfig(perceptual_weight=0), LossConfig(perceptual_weight=0, edge_weight=10)
    loss = lambda cfg, rec: reconstruction_loss(cfg, target, rec, lpips=None)[0].item()  # noqa: E731
    assert abs(loss(weighted, flat_error) - loss(plain, flat_error)) < 1e-7
    assert abs(loss(weighted, edge_error) - 6 * loss(plain, edge_error)) < 1e-6  # 1 + 10 * 0.5
    # what is logged stays the plain mean, comparable with runs without the weighting
    logged = reconstruction_loss(weighted, target, edge_error, lpips=None)[1]["l1"].item()
    assert abs(logged - loss(plain, edge_error)) < 1e-7
