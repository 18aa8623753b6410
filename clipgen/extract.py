"""One pass over image shards: VQGAN codes and CLIP image embeddings into token shards.

Extracting once and training the condition transformer on the tokens (as LlamaGen does) rather
than running the VQGAN and the CLIP at every step (as HFAiLab/clip-gen does) is the largest
training speed-up of the method. Ranks (torchrun) take every world_size-th image shard; each
token shard is written atomically under its image shard's name, so a rerun skips finished ones.

The CLIP sees exactly the crop the tokens describe: the VQGAN's centre crop at its resolution,
handed to the CLIP's own preprocessing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from clipgen.data.loader import ImageDataConfig, expand_shards, make_image_loader
from clipgen.data.shards import MANIFEST_NAME
from clipgen.data.tokens import codes_dtype, write_token_shard
from clipgen.engine.dist import DistInfo, all_reduce_sum, barrier
from clipgen.engine.atomic import atomic_write, check_or_record_settings
from clipgen.images import to_pil

log = logging.getLogger("clipgen.extract")


@dataclass
class ExtractJob:
    vqgan_dir: Path
    clip: str  # KIND:PATH[;KEY=VALUE...], see clipgen.encoders.load_clip_spec
    data: str
    out: Path
    batch_size: int = 64
    # also the CLIP text embedding of each sample's caption (for the caption-trained baseline);
    # samples without a caption then get none, and are counted
    caption_embeddings: bool = False


def run_extract(job: ExtractJob, info: DistInfo) -> dict:
    from clipgen.encoders import load_clip_spec
    from clipgen.models.vqgan import VQGAN

    if job.batch_size < 1:
        raise ValueError(f"the batch size (--batch-size) must be at least 1, got {job.batch_size}")
    # every input is read before anything is written to job.out
    shards = expand_shards(job.data)
    vqgan = VQGAN.from_pretrained(job.vqgan_dir).to(info.device).eval()
    clip = load_clip_spec(job.clip, device=info.device)
    _claim_settings(job, info)
    dtype = codes_dtype(vqgan.config.n_embed)
    counts = torch.zeros(4, dtype=torch.float64)  # images, bad samples, shards skipped as done, no caption
    for shard in shards[info.rank :: info.world_size]:
        target = job.out / Path(shard).name
        if target.exists():
            counts[2] += 1
            continue
        cfg = ImageDataConfig(shards=shard, image_size=vqgan.config.resolution, num_workers=0)
        loader = make_image_loader(cfg, batch_size=job.batch_size, seed=0, train=False)
        samples = []
        for batch in loader:
            pil = to_pil(batch["image"])  # from the CPU batch, before it goes to the device
            codes = vqgan.encode_to_indices(batch["image"].to(info.device)).cpu().numpy().astype(dtype)
            embeddings = clip.encode_image(pil).cpu().numpy()
            texts = _caption_embeddings(clip, batch["meta"]) if job.caption_embeddings else [None] * len(pil)
            for key, code, emb, text, meta in zip(batch["key"], codes, embeddings, texts, batch["meta"]):
                samples.append({"key": key, "codes": code, "clip": emb, "text": text, "meta": meta})
        write_token_shard(target, samples)
        no_caption = sum(s["text"] is None for s in samples) if job.caption_embeddings else 0
        counts += torch.tensor([len(samples), loader.bad_samples.count, 0, no_caption], dtype=torch.float64)
        log.info("%s: %d images, %d bad", target.name, len(samples), loader.bad_samples.count)
    all_reduce_sum(counts)
    summary = {
        "vqgan": str(job.vqgan_dir), "token_grid": vqgan.config.token_grid, "n_embed": vqgan.config.n_embed,
        "clip": {"spec": job.clip, "dim": clip.dim},
        "images_this_pass": int(counts[0]), "bad_samples_this_pass": int(counts[1]),
        "shards_already_done": int(counts[2]), "caption_embeddings": job.caption_embeddings,
        "samples_without_caption_this_pass": int(counts[3]), "shards": sorted(p.name for p in job.out.glob("*.tar")),
    }  # fmt: skip
    if info.is_main:
        with atomic_write(job.out / MANIFEST_NAME) as tmp:
            tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    barrier()
    return summary


SETTINGS_NAME = "extract-settings.json"


def _claim_settings(job: ExtractJob, info: DistInfo) -> None:
    """A rerun skips finished shards, so it must not mix in shards made with other settings: the
    settings are written before the first shard, and a rerun with others is refused."""
    settings = {"vqgan": str(Path(job.vqgan_dir).resolve()), "clip": job.clip, "caption_embeddings": job.caption_embeddings}
    path = job.out / SETTINGS_NAME
    if not path.is_file() and any(job.out.glob("*.tar")):
        raise ValueError(f"{job.out} holds token shards of unknown settings (no {SETTINGS_NAME}); use another --out or delete it")
    check_or_record_settings(path, settings, record=info.is_main)
    barrier()  # every rank passes here, so none starts before rank 0 has recorded the settings


def _caption_embeddings(clip, metas: list[dict]) -> list:
    """The CLIP text embedding of each sample's caption, None where a sample has none."""
    captions = [str(meta.get("caption", "")).strip() for meta in metas]
    present = [i for i, caption in enumerate(captions) if caption]
    out = [None] * len(metas)
    if present:
        for i, emb in zip(present, clip.encode_text([captions[i] for i in present]).cpu().numpy()):
            out[i] = emb
    return out
