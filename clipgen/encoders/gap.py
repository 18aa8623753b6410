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
- `retrieval`: train on image embeddings as they come; at inference, replace the text embedding by
  the mean of the `retrieval_k` training-image embeddings nearest to it (cosine), renormalised. The
  generator then only ever reads embeddings from the image side, and the CLIP does what it was
  trained for, matching text to images. No caption is used: the bank holds image embeddings only.
  Training is exactly that of `none`; only inference differs.

The statistics a bridge needs live in the run directory (`gap.json`, and the retrieval bridge's
bank of image embeddings in `gap-bank.safetensors`), so inference applies exactly what training
did.
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


BANK_NAME = "gap-bank.safetensors"


@dataclass
class GapConfig:
    bridge: Literal["none", "lafite", "c3", "retrieval"] = "none"
    noise: float = 0.0  # lafite: ξ (e.g. 0.5); c3: std per dimension (e.g. 0.126)
    text_file: str = ""  # c3: unpaired texts, one per line, for the text mean
    retrieval_k: int = 4  # retrieval: training-image embeddings averaged per prompt
    bank_size: int = 65536  # retrieval: training images kept in the bank (a seeded random subset)


def gap_statistics(image_emb: torch.Tensor, text_emb: torch.Tensor) -> dict[str, float]:
    """For L2-normalised matching pairs (row i with row i): their mean cosine, and the distance
    between the two modalities' mean embeddings."""
    image_emb, text_emb = image_emb.double(), text_emb.double()
    return {
        "pair_cosine": (image_emb * text_emb).sum(dim=-1).mean().item(),
        "mean_distance": (image_emb.mean(0) - text_emb.mean(0)).norm().item(),
    }


class GapBridge:
    def __init__(self, config: GapConfig, image_mean: torch.Tensor | None = None, text_mean: torch.Tensor | None = None,
                 bank: torch.Tensor | None = None):  # fmt: skip
        if config.bridge == "c3" and (image_mean is None or text_mean is None):
            raise ValueError("the c3 bridge needs the image and the text mean embeddings")
        if config.bridge == "retrieval" and (bank is None or len(bank) < config.retrieval_k or config.retrieval_k < 1):
            raise ValueError(f"the retrieval bridge needs a bank of at least retrieval_k ({config.retrieval_k}) image embeddings")
        self.config, self.image_mean, self.text_mean, self.bank = config, image_mean, text_mean, bank

    @staticmethod
    def bank_from(image_emb: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
        """A retrieval bank: at most `size` of the training images' embeddings, L2-normalised,
        float16, drawn without replacement by `seed`."""
        if len(image_emb) > size:
            image_emb = image_emb[torch.randperm(len(image_emb), generator=torch.Generator().manual_seed(seed))[:size]]
        return F.normalize(image_emb.float(), dim=-1).half()

    def for_training(self, image_emb: torch.Tensor, generator: torch.Generator | None = None, noise: bool = True) -> torch.Tensor:
        """What the generator is conditioned on in training, from L2-normalised image embeddings;
        `noise=False` gives the noiseless centre of that distribution (for evaluation)."""
        cfg = self.config
        if cfg.bridge in ("none", "retrieval") or (cfg.bridge == "lafite" and not noise):
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
        if self.config.bridge == "retrieval":
            bank = self.bank.to(text_emb)
            nearest = (text_emb @ bank.T).topk(self.config.retrieval_k, dim=-1).indices
            return F.normalize(bank[nearest].mean(dim=1), dim=-1)
        return text_emb

    def save(self, directory: str | Path) -> None:
        data = {"config": to_dict(self.config)}
        for name in ("image_mean", "text_mean"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value.double().cpu().tolist()
        if self.bank is not None:
            from safetensors.torch import save_file

            with atomic_write(Path(directory) / BANK_NAME) as tmp:
                save_file({"bank": self.bank.half().contiguous().cpu()}, str(tmp))
        with atomic_write(Path(directory) / "gap.json") as tmp:
            tmp.write_text(json.dumps(data), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "GapBridge":
        path = Path(directory) / "gap.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the run directory holds no gap bridge")
        data = json.loads(path.read_text(encoding="utf-8"))
        means = {k: torch.tensor(data[k], dtype=torch.float32) for k in ("image_mean", "text_mean") if k in data}
        config = from_dict(GapConfig, data["config"])
        bank = None
        if config.bridge == "retrieval":
            from safetensors.torch import load_file

            if not (Path(directory) / BANK_NAME).is_file():
                raise FileNotFoundError(f"{Path(directory) / BANK_NAME} not found: the retrieval bridge needs its bank")
            bank = load_file(str(Path(directory) / BANK_NAME))["bank"]
        return cls(config, **means, bank=bank)
