"""Tiny in-memory images and shards for the data-layer tests."""

from __future__ import annotations

import io
from pathlib import Path

import webdataset as wds
from PIL import Image


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (20, 16), colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    """A JPEG cut in half: PIL reads its header but fails to decode the pixels."""
    full = image_bytes("JPEG", size=(64, 64))
    return full[: len(full) // 2]


def write_tar(path: Path, samples: list[dict]) -> Path:
    """Write webdataset samples ({"__key__": ..., ext: bytes}) to one tar, as-is."""
    with wds.TarWriter(str(path), encoder=False) as sink:
        for sample in samples:
            sink.write(sample)
    return path


def decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def save_tiny_stage_models(root, ch_mult=(1, 1, 2)):
    """A random tiny VQGAN (32 px -> 8×8 tokens, 64 codes) at root/vq/model and a random toy CLIP
    (16-d) at root/clip: enough for the stages after them to run on shapes-zh 32 px."""
    import torch

    from clipgen.encoders.toy_clip import ToyClip, ToyClipConfig
    from clipgen.models.vqgan import VQGAN, VQGANConfig
    from clipgen.train.toy_clip import caption_characters

    torch.manual_seed(0)
    config = VQGANConfig(resolution=32, ch=32, ch_mult=list(ch_mult), num_res_blocks=1, attn_resolutions=[],
                         z_channels=8, embed_dim=4, n_embed=64)  # fmt: skip
    VQGAN(config).save_pretrained(root / "vq" / "model")
    ToyClip(ToyClipConfig(dim=16), caption_characters()).save_pretrained(root / "clip")
