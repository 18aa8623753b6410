"""The modality gap, measured and bridged.

A CLIP's image and text embeddings of a matching pair are far apart (cosine ~0.3 for real CLIPs),
yet the language-free generator is trained on image embeddings and asked, at inference, to follow
text embeddings. The bridges, chosen by `GapConfig.bridge` and applied by one `GapBridge` object
in training and at inference alike:

- `none`: image embeddings in training, text embeddings at inference, as they come.
- `lafite` (Zhou et al., LAFITE, CVPR 2022): train on h' = normalize(h + ξ·ε·‖h‖/‖ε‖), ε ~ N(0, I),
  so the generator learns to follow a neighbourhood of h that reaches the text embeddings.
- `c3` (Zhang et al., C³, ICLR 2024): subtract each modality's mean embedding (the image mean from
  the training images, the text mean from unpaired text) and, in training, add Gaussian noise of
  standard deviation `noise` per dimension (the paper's 0.126 for 512-d); renormalise.

The statistics a bridge needs live in the run directory (`gap.json`), so inference applies
exactly what training did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from clipgen.config import from_dict, to_dict
from clipgen.engine.atomic import atomic_write


@dataclass
class GapConfig:
    bridge: Literal["none", "lafite", "c3"] = "none"
    noise: float = 0.0  # lafite: ξ (e.g. 0.5); c3: std per dimension (e.g. 0.126)
    text_file: str = ""  # c3: unpaired texts, one per line, for the text mean


def gap_statistics(image_emb: torch.Tensor, text_emb: torch.Tensor) -> dict[str, float]:
    """For L2-normalised matching pairs (row i with row i): their mean cosine, and the distance
    between the two modalities' mean embeddings."""
    image_emb, text_emb = image_emb.double(), text_emb.double()
    return {
        "pair_cosine": (image_emb * text_emb).sum(dim=-1).mean().item(),
        "mean_distance": (image_emb.mean(0) - text_emb.mean(0)).norm().item(),
    }


class GapBridge:
    def __init__(self, config: GapConfig, image_mean: torch.Tensor | None = None, text_mean: torch.Tensor | None = None):
        if config.bridge == "c3" and (image_mean is None or text_mean is None):
            raise ValueError("the c3 bridge needs the image and the text mean embeddings")
        self.config, self.image_mean, self.text_mean = config, image_mean, text_mean

    def for_training(self, image_emb: torch.Tensor, generator: torch.Generator | None = None, noise: bool = True) -> torch.Tensor:
        """What the generator is conditioned on in training, from L2-normalised image embeddings;
        `noise=False` gives the noiseless centre of that distribution (for evaluation)."""
        cfg = self.config
        if cfg.bridge == "none" or (cfg.bridge == "lafite" and not noise):
            return image_emb
        if not noise:
            return F.normalize(image_emb - self.image_mean.to(image_emb), dim=-1)
        eps = torch.randn(image_emb.shape, generator=generator, device=image_emb.device, dtype=image_emb.dtype)
        if cfg.bridge == "lafite":
            scaled = eps * image_emb.norm(dim=-1, keepdim=True) / eps.norm(dim=-1, keepdim=True)
            return F.normalize(image_emb + cfg.noise * scaled, dim=-1)
        return F.normalize(image_emb - self.image_mean.to(image_emb) + cfg.noise * eps, dim=-1)

    def for_inference(self, text_emb: torch.Tensor) -> torch.Tensor:
        """What the generator is conditioned on at inference, from L2-normalised text embeddings."""
        if self.config.bridge == "c3":
            return F.normalize(text_emb - self.text_mean.to(text_emb), dim=-1)
        return text_emb

    def save(self, directory: str | Path) -> None:
        data = {"config": to_dict(self.config)}
        for name in ("image_mean", "text_mean"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value.double().cpu().tolist()
        with atomic_write(Path(directory) / "gap.json") as tmp:
            tmp.write_text(json.dumps(data), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "GapBridge":
        path = Path(directory) / "gap.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the run directory holds no gap bridge")
        data = json.loads(path.read_text(encoding="utf-8"))
        means = {k: torch.tensor(data[k], dtype=torch.float32) for k in ("image_mean", "text_mean") if k in data}
        return cls(from_dict(GapConfig, data["config"]), **means)
