"""Feature spaces for Fréchet distances that need no downloaded network.

`pixels`: the image average-pooled to 8×8 (192 numbers); crude, but defined on any machine and
sensitive to colour and layout errors. `vgg`: LPIPS's VGG16 activations, average-pooled per tap
(1472 numbers), when an LPIPS weights file is at hand. Neither is comparable with published FID
figures, which need Inception weights; the name of the feature space is part of every metric key.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(images.float(), 8).flatten(1)


def vgg_features(lpips) -> FeatureFn:
    def features(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([tap.mean(dim=(2, 3)) for tap in lpips.taps(images.float())], dim=1)

    return features


def feature_fn(name: str, lpips=None) -> FeatureFn:
    if name == "pixels":
        return pixel_features
    if name == "vgg":
        if lpips is None:
            raise ValueError("eval.fd_features: vgg needs loss.perceptual_weights (the LPIPS VGG16 file)")
        return vgg_features(lpips)
    raise ValueError(f"unknown feature space {name!r}; choose pixels or vgg")
