"""CLIP-GEN's second loss: embedding reconstruction through the frozen VQGAN and CLIP.

The paper trains the condition transformer on token likelihood plus a term that asks the CLIP
image embedding of the decoded prediction to match the image's own. The prediction is discrete,
so the tokens pass gradients by a straight-through one-hot:

    logits -> one-hot of the argmax, with the softmax's gradient (or a Gumbel-softmax sample)
           -> codebook lookup -> frozen VQGAN decoder -> pixels in [-1, 1]
           -> frozen CLIP image tower, with that CLIP's own resize and normalisation
           -> 1 - cosine to the target embedding

The distance is 1 - cosine between L2-normalised embeddings: half their squared distance, which
is the paper's reconstruction error, and unlike an MSE averaged over the embedding's width
(HFAiLab/clip-gen's `loss_clip_weight`) one weight means the same for a 64-d toy CLIP and a 768-d
one. Only the transformer learns: the VQGAN and the CLIP stay frozen and in eval mode, and are
never part of the transformer's checkpoint.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from clipgen.encoders.base import ClipEncoder, frozen
from clipgen.models.vqgan import VQGAN

Estimator = Literal["straight_through", "gumbel"]


def differentiable_one_hot(logits: torch.Tensor, estimator: Estimator, temperature: float,
                           generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """[..., V] logits -> one-hot rows whose value is the picked token and whose gradient is the
    softmax's (at `temperature`). `straight_through` picks the argmax, the token greedy sampling
    draws; `gumbel` picks the argmax of Gumbel-perturbed logits, a sample from the softmax, as
    sampling at that temperature draws."""
    scores = logits.float() / temperature
    if estimator == "gumbel":
        uniform = torch.rand(scores.shape, generator=generator, device=scores.device).clamp_(1e-10, 1.0)
        scores = scores - torch.log(-torch.log(uniform))
    elif estimator != "straight_through":
        raise ValueError(f"unknown estimator {estimator!r}: straight_through or gumbel")
    soft = scores.softmax(dim=-1)
    hard = F.one_hot(scores.argmax(dim=-1), scores.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft  # forward: exactly `hard`; backward: the softmax's gradient


class ClipReconstructionLoss:
    """1 - cosine between the CLIP embedding of the decoded prediction and a target embedding."""

    def __init__(self, vqgan: VQGAN, clip: ClipEncoder, estimator: Estimator = "straight_through", temperature: float = 1.0):
        self.vqgan = frozen(vqgan)
        self.clip, self.estimator, self.temperature = clip, estimator, temperature

    def decode(self, one_hot: torch.Tensor) -> torch.Tensor:
        """One-hot tokens [B, T, V] -> pixels [B, 3, H, W] in [-1, 1], differentiable in `one_hot`."""
        grid = self.vqgan.config.token_grid
        codes = self.vqgan.quantize.one_hot_to_codes(one_hot.view(len(one_hot), grid, grid, -1))
        # clamped as the images are when saved: the CLIP scores what a viewer would see
        return self.vqgan.decode(codes).clamp(-1, 1)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """logits [B, T, V] over the image tokens, target [B, dim] L2-normalised -> a scalar."""
        one_hot = differentiable_one_hot(logits, self.estimator, self.temperature, generator)
        embedding = self.clip.encode_image_tensor(self.decode(one_hot))
        return (1 - (embedding * target.to(embedding)).sum(dim=-1)).mean()
