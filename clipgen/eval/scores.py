"""The metrics of one set of generated images, accumulated batch by batch and gathered over ranks.

- `fd_<space>`: Fréchet distance to the real images' features in each feature space given (the
  CLIP image tower's embeddings; Inception pool features when a weights file is at hand);
- `clip_score`: mean over images of max(100 · cos(image, prompt), 0) under the scoring CLIP;
- `colour`, `shape`, `size`, `position`: the shapes-zh judge's accuracy, when every prompt is a
  shapes-zh description.
Every statistic is a sum, so ranks add theirs with one all-reduce and rank 0 reports.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import torch
from PIL import Image

from clipgen.engine.dist import all_reduce_sum
from clipgen.eval.frechet import FeatureStats, frechet_distance_of
from clipgen.eval.shapes_judge import AttributeScore, read_image, wanted_attributes

ImageFeatures = Callable[[Sequence[Image.Image]], torch.Tensor]


def clip_feature_space(clip) -> ImageFeatures:
    return lambda images: clip.encode_image(list(images)).cpu()


def clip_scores(clip, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
    """max(100 · cos, 0) per (image, prompt) pair, as Hessel et al.'s CLIPScore with w = 100."""
    image_emb = clip.encode_image(list(images))
    text_emb = clip.encode_text(list(prompts))
    return (100.0 * (image_emb * text_emb).sum(-1)).clamp(min=0).cpu()


def shapes_prompts(prompts: Iterable[str]) -> bool:
    """Whether the judge can read what every prompt asks for."""
    try:
        return all(wanted_attributes(p) for p in prompts)
    except ValueError:
        return False


def feature_stats(spaces: Mapping[str, ImageFeatures], batches: Iterable[Sequence[Image.Image]]) -> dict[str, FeatureStats]:
    """Feature statistics of a set of images (the real ones), this rank's share, gathered."""
    stats: dict[str, FeatureStats] = {}
    for images in batches:
        for name, features in spaces.items():
            f = features(images)
            stats.setdefault(name, FeatureStats(f.shape[1])).add(f)
    for s in stats.values():
        s.all_reduce()
    return stats


class GeneratedScores:
    def __init__(self, spaces: Mapping[str, ImageFeatures], clip=None, judge: bool = False):
        self.spaces, self.clip, self.judge = spaces, clip, judge
        self.stats: dict[str, FeatureStats] = {}
        self.clip_sum = torch.zeros(2, dtype=torch.float64)  # summed score, images
        self.attributes = AttributeScore()

    def add(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> None:
        """One prompt per image."""
        for name, features in self.spaces.items():
            f = features(images)
            self.stats.setdefault(name, FeatureStats(f.shape[1])).add(f)
        if self.clip is not None:
            scores = clip_scores(self.clip, images, prompts)
            self.clip_sum += torch.tensor([scores.sum().item(), len(scores)], dtype=torch.float64)
        if self.judge:
            self.attributes.add_all((read_image(image) for image in images), (wanted_attributes(p) for p in prompts))

    def gather(self) -> "GeneratedScores":
        for s in self.stats.values():
            s.all_reduce()
        all_reduce_sum(self.clip_sum)
        if self.judge:
            self.attributes.all_reduce()
        return self

    def results(self, real: Mapping[str, FeatureStats] | None = None) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, stats in self.stats.items():
            if real and name in real:
                out[f"fd_{name}"] = frechet_distance_of(stats, real[name])
        if self.clip is not None and self.clip_sum[1] > 0:
            out["clip_score"] = (self.clip_sum[0] / self.clip_sum[1]).item()
        if self.judge:
            out.update(self.attributes.accuracy())
        return out
