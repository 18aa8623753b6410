"""Attribute accuracy of a generator on shapes-zh: sample, then let the geometric judge score.

Two conditions are measured the same way, batch by batch with seeds fixed per batch:
- from prompts (the real use: Chinese text through the CLIP text tower and the run's bridge);
- from the CLIP image embeddings of held-out images (what the generator was trained on, so the
  difference between the two is what the modality gap costs).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from PIL import Image

from clipgen.eval.shapes_judge import AttributeScore, read_image, wanted_attributes


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield start, min(start + batch_size, n)


def judge_prompts(pipe, prompts: Sequence[str], seed: int = 0, batch_size: int = 96, **sampling) -> tuple[AttributeScore, list[Image.Image]]:
    """One image per prompt; batch b is sampled with seed `seed + b`, so the result does not depend
    on anything but the prompts, the seed and the batch size."""
    score, images = AttributeScore(), []
    for b, (start, stop) in enumerate(_batches(len(prompts), batch_size)):
        batch = [out[0] for out in pipe(list(prompts[start:stop]), seed=seed + b, **sampling)]
        score.add_all((read_image(image) for image in batch), (wanted_attributes(p) for p in prompts[start:stop]))
        images += batch
    return score, images


@torch.no_grad()
def judge_image_conditioned(
    pipe, images: Sequence[Image.Image], labels: Sequence[Mapping[str, str]], seed: int = 0, batch_size: int = 96, **sampling
) -> AttributeScore:
    """Generate from each image's own CLIP image embedding (through the bridge's training-time
    transform, without its noise) and judge against the image's labels."""
    score = AttributeScore()
    for b, (start, stop) in enumerate(_batches(len(images), batch_size)):
        cond = pipe.bridge.for_training(pipe.clip.encode_image(list(images[start:stop])), noise=False)
        generated = pipe.generate(cond, seed=seed + b, **sampling)
        score.add_all((read_image(image) for image in generated), labels[start:stop])
    return score
