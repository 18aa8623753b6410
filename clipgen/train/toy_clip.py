"""Training the toy CLIP on shapes-zh images and their captions (`clipgen train-toy-clip`).

Each step draws a fresh caption for every image from its labels (shapes-zh's templates, any
synonym), so the text tower sees the whole caption language, not one fixed sentence per image.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from clipgen.data.loader import ImageDataConfig, expand_shards, make_image_loader
from clipgen.data.shapes import ATTRIBUTES, CAPTION_TEMPLATES, make_caption
from clipgen.encoders.toy_clip import ToyClip, ToyClipConfig
from clipgen.engine.dist import DistInfo, all_reduce_sum
from clipgen.engine.logging import RunLogger
from clipgen.engine.trainer import RunConfig
from clipgen.train.image_stream import TrainsOnImageShards

log = logging.getLogger("clipgen.train")


@dataclass
class ToyClipOptimConfig:
    lr: float = 2e-3
    weight_decay: float = 0.05


@dataclass
class ToyClipEvalConfig:
    shards: str = ""
    max_images: int = 1000


@dataclass
class ToyClipTrainConfig:
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/toy_clip", ema_decay=0.0))
    data: ImageDataConfig = field(default_factory=lambda: ImageDataConfig(crop="center", flip=False))
    eval: ToyClipEvalConfig = field(default_factory=ToyClipEvalConfig)
    model: ToyClipConfig = field(default_factory=ToyClipConfig)
    optim: ToyClipOptimConfig = field(default_factory=ToyClipOptimConfig)


def caption_characters() -> list[str]:
    """Every character shapes-zh captions can contain."""
    words = [w for values in ATTRIBUTES.values() for value in values for w in value.words]
    templates = [zh for zh, _ in CAPTION_TEMPLATES]
    return sorted(set("".join(words + templates)) - set("{}_abcdefghijklmnopqrstuvwxyz"))


class ToyClipTask(TrainsOnImageShards):
    def __init__(self, cfg: ToyClipTrainConfig, info: DistInfo):
        if cfg.data.flip:
            # a flip moves the object from 左 to 右: the caption would lie
            raise ValueError("data.flip must be false for the toy CLIP: flipping changes the position")
        expand_shards(cfg.data.shards)
        if cfg.eval.shards:  # found now, not at the first evaluation
            expand_shards(cfg.eval.shards)
        self.cfg, self.info, self.device = cfg, info, info.device
        torch.manual_seed(cfg.run.seed)
        self.model = ToyClip(cfg.model, caption_characters()).to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.model_ddp = DDP(self.model) if info.distributed else self.model

    def _ids(self, metas: list[dict], rng: np.random.Generator | None) -> torch.Tensor:
        """Fresh captions from the labels (training), or each image's stored caption (eval)."""
        if any("labels" not in m for m in metas):
            raise ValueError("toy CLIP training needs shapes-zh shards (json with labels)")
        texts = [make_caption(m["labels"], rng)[0] if rng is not None else m["caption"] for m in metas]
        return self.model.tokenizer(texts)[0].to(self.device)

    def train_step(self, micro_batches: list[dict[str, Any]], step: int) -> dict[str, float]:
        self.model.train()
        metrics: dict[str, float] = {}
        # captions drawn from (seed, rank, step) alone, so a resumed run draws the same ones
        captions = np.random.default_rng([self.cfg.run.seed, self.info.rank, step])
        for batch in micro_batches:
            loss, parts = self.model_ddp(batch["image"].to(self.device), self._ids(batch["meta"], captions))
            (loss / len(micro_batches)).backward()
            metrics = {"loss": loss.item(), **parts}
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return metrics

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Retrieval accuracy within batches of held-out images and their stored captions, and
        the modality gap: mean cosine of matching pairs, distance between the modality means."""
        if not self.cfg.eval.shards:
            return {}
        self.model.eval()
        loader = make_image_loader(
            dataclasses.replace(self.cfg.data, shards=self.cfg.eval.shards), batch_size=self.cfg.run.batch_size,
            seed=self.cfg.run.seed, rank=self.info.rank, world_size=self.info.world_size, train=False,
        )  # fmt: skip
        sums = torch.zeros(3, dtype=torch.float64)  # correct, pair cosine, count
        img_sum = txt_sum = torch.zeros(self.cfg.model.dim, dtype=torch.float64)
        for batch in loader:
            img = F.normalize(self.model.image(batch["image"].to(self.device)), dim=-1).double().cpu()
            txt = F.normalize(self.model.text(self._ids(batch["meta"], None)), dim=-1).double().cpu()
            sims = img @ txt.t()
            # a caption may fit several images of a batch; count a hit when the best text is
            # one whose caption is identical to the image's own
            captions = [m["caption"] for m in batch["meta"]]
            best = sims.argmax(dim=1).tolist()
            sums += torch.tensor([sum(captions[b] == c for b, c in zip(best, captions)), sims.diag().sum().item(), len(img)])
            img_sum, txt_sum = img_sum + img.sum(0), txt_sum + txt.sum(0)
            if sums[2] >= self.cfg.eval.max_images:
                break
        for tensor in (sums, img_sum, txt_sum):
            all_reduce_sum(tensor)
        n = sums[2].item()
        return {
            "retrieval_top1": sums[0].item() / n,
            "pair_cosine": sums[1].item() / n,
            "mean_gap": (img_sum / n - txt_sum / n).norm().item(),
            "images": n,
        }

    def log_images(self, logger: RunLogger, step: int) -> None:
        pass  # nothing visual to show: the gap statistics go to the scalars

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])

    def export(self, run_dir: Path) -> None:
        self.model.save_pretrained(run_dir / "model")
