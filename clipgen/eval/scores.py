"""The metrics of one set of generated images, accumulated batch by batch and gathered over ranks.

- `fd_<space>`: Fréchet distance to the real images' features in each feature space given (the
  CLIP image tower's embeddings; Inception pool features when a weights file is at hand);
- `clip_score`: mean over images of max(100 · cos(image, prompt), 0) under the scoring CLIP;
- `colour`, `shape`, `size`, `position`: the shapes-zh judge's accuracy, when every prompt is a
  shapes-zh description.
Every statistic is a sum, so ranks add theirs with one all-reduce and rank 0 reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch
from PIL import Image

from clipgen.engine.dist import all_reduce_sum
from clipgen.eval.frechet import FeatureStats, frechet_distance_of
from clipgen.eval.shapes_judge import AttributeScore, read_image, wanted_attributes


@dataclass(frozen=True)
class FeatureSpace:
    """Where Fréchet distances are measured: `features(images) -> [B, dim]`, and what it is."""

    description: str
    dim: int
    features: Callable[[Sequence[Image.Image]], torch.Tensor]

    def stats(self) -> FeatureStats:
        # created before any image is seen, so a rank that gets no images still joins every all-reduce
        return FeatureStats(self.dim)


def clip_feature_space(clip) -> FeatureSpace:
    return FeatureSpace(f"{clip.kind or 'CLIP'} image tower", clip.dim, lambda images: clip.encode_image(list(images)).cpu())


def inception_feature_space(inception) -> FeatureSpace:
    return FeatureSpace(inception.name, 2048, inception)


def clip_scores(clip, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
    """max(100 · cos, 0) per (image, prompt) pair, as Hessel et al.'s CLIPScore with w = 100."""
    image_emb = clip.encode_image(list(images))
    text_emb = clip.encode_text(list(prompts))
    return (100.0 * (image_emb * text_emb).sum(-1)).clamp(min=0).cpu()


def shapes_prompts(prompts: Iterable[str]) -> bool:
    """Whether these look like shapes-zh prompts, which the judge can score: every one names a
    shape (every shapes-zh caption does). A colour or size word alone is not enough: real prompts
    ("一件大的白色T恤") have those too, and the judge would then score photographs."""
    try:
        return all("shape" in wanted_attributes(p) for p in prompts)
    except ValueError:
        return False


def feature_stats(spaces: Mapping[str, FeatureSpace], batches: Iterable[Sequence[Image.Image]]) -> dict[str, FeatureStats]:
    """Feature statistics of a set of images (the real ones), this rank's share, gathered."""
    stats = {name: space.stats() for name, space in spaces.items()}
    for images in batches:
        for name, space in spaces.items():
            stats[name].add(space.features(images))
    for s in stats.values():
        s.all_reduce()
    return stats


class GeneratedScores:
    def __init__(self, spaces: Mapping[str, FeatureSpace], clip=None, judge: bool = False):
        self.spaces, self.clip, self.judge = spaces, clip, judge
        self.stats = {name: space.stats() for name, space in spaces.items()}
        self.clip_sum = torch.zeros(2, dtype=torch.float64)  # summed score, images
        self.attributes = AttributeScore()

    def add(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> None:
        """One prompt per image."""
        for name, space in self.spaces.items():
            self.stats[name].add(space.features(images))
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
            if real and name in real and stats.count > 1 and real[name].count > 1:
                out[f"fd_{name}"] = frechet_distance_of(stats, real[name])
        if self.clip is not None and self.clip_sum[1] > 0:
            out["clip_score"] = (self.clip_sum[0] / self.clip_sum[1]).item()
        if self.judge:
            out.update(self.attributes.accuracy())
        return out
