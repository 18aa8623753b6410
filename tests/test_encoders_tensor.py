"""encode_image_tensor: each CLIP's own resize and normalisation on pixel tensors, differentiably.

The tensor path must give the PIL path's embedding of the same picture. Where no resize happens
the two run the same arithmetic (1e-5). Where the CLIP resizes, the PIL path resizes uint8 and
rounds the result to uint8 again (and clamps the bicubic overshoot); the tensor path keeps floats,
so the inputs differ by up to half a grey level: TOLERANCE_RESIZED bounds what that does to the
L2-normalised embedding of these tiny random towers (measured: at most 1.8e-3, Chinese CLIP at
40 px), with room to spare, while resizing with the wrong filter misses by 1.8e-2 or more.
"""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipgen.encoders import load_clip
from clipgen.encoders.pixels import PixelPreprocess
from data_helpers import save_tiny_stage_models
from test_encoders import chinese_clip_dir, open_clip_file  # noqa: F401  (the tiny towers, as fixtures)
from test_encoders_taiyi import taiyi_dirs  # noqa: F401

TOLERANCE_EXACT = 1e-5
TOLERANCE_RESIZED = 5e-3


def detailed_images(side: int, n: int = 3) -> list[Image.Image]:
    """Noise over smooth gradients: every pixel differs, so a wrong filter or offset shows."""
    rng = np.random.default_rng(side)
    ramp = np.linspace(0, 255, side)[None, :, None] * np.ones((side, 1, 3))
    return [Image.fromarray(np.clip(ramp * (i + 1) / n + rng.normal(0, 40, (side, side, 3)), 0, 255).astype(np.uint8))
            for i in range(n)]  # fmt: skip


def as_pixels(images: list[Image.Image]) -> torch.Tensor:
    """PIL images -> [B, 3, H, W] in [-1, 1], as a VQGAN decoder would give them."""
    arrays = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2) / 127.5 - 1


@pytest.fixture(scope="module")
def encoders(tmp_path_factory, chinese_clip_dir, open_clip_file, taiyi_dirs):  # noqa: F811
    toy_root = tmp_path_factory.mktemp("toy")
    save_tiny_stage_models(toy_root)
    text_dir, image_dir = taiyi_dirs
    return {
        "toy": load_clip("toy", toy_root / "clip"),
        "chinese-clip": load_clip("chinese-clip", chinese_clip_dir),
        "open_clip": load_clip("open_clip", open_clip_file, arch="clipgen-tiny-test"),
        "taiyi": load_clip("taiyi", text_dir, image_dir=image_dir),
    }


# every tower takes 32 px: 32 needs no resize; the toy's box filter halves 64 exactly (torch's
# "area" equals PIL's BOX at whole-number ratios); the others downscale 40 and 48 bicubic with
# antialias, as 256 -> 224 is
CASES = [("toy", 32), ("toy", 64)] + [(kind, side) for kind in ("chinese-clip", "open_clip", "taiyi") for side in (32, 40, 48)]


@pytest.mark.parametrize("kind,side", CASES)
def test_tensor_path_matches_the_pil_path(encoders, kind, side):
    encoder, tolerance = encoders[kind], TOLERANCE_EXACT if side == 32 else TOLERANCE_RESIZED
    images = detailed_images(side)
    from_pil = encoder.encode_image(images)
    from_tensor = encoder.encode_image_tensor(as_pixels(images))
    assert from_tensor.shape == from_pil.shape and from_tensor.dtype == torch.float32
    torch.testing.assert_close(from_tensor, from_pil, atol=tolerance, rtol=0)
    if side != 32:  # the check has teeth: resizing with another filter misses by more than the tolerance
        wrong = dataclasses.replace(encoder.pixel_preprocess, interpolation="nearest", antialias=False)
        with torch.no_grad():
            wrongly_resized = F.normalize(encoder._pixel_features(wrong(as_pixels(images))).float(), dim=-1)
        assert (wrongly_resized - from_pil).abs().max() > tolerance


@pytest.mark.parametrize("kind", ["toy", "chinese-clip", "open_clip", "taiyi"])
def test_gradients_reach_the_pixels_and_never_the_tower(encoders, kind):
    encoder = encoders[kind]
    pixels = as_pixels(detailed_images(40)).requires_grad_(True)
    before = pixels.detach().clone()
    target = torch.nn.functional.normalize(torch.randn(3, encoder.dim, generator=torch.Generator().manual_seed(0)), dim=-1)
    (1 - (encoder.encode_image_tensor(pixels) * target).sum(-1)).mean().backward()
    assert pixels.grad is not None and torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0
    towers = [m for m in vars(encoder).values() if isinstance(m, torch.nn.Module)]
    assert towers and all(not p.requires_grad and p.grad is None for m in towers for p in m.parameters())
    assert all(not m.training for m in towers)
    assert pixels.min() >= -1  # the input was not normalised in place
    assert torch.equal(pixels.detach(), before)


def test_tensor_path_under_bf16_autocast_stays_close(encoders):
    encoder = encoders["chinese-clip"]
    pixels = as_pixels(detailed_images(40)).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embedding = encoder.encode_image_tensor(pixels)
    embedding.sum().backward()
    assert embedding.dtype == torch.float32 and pixels.grad is not None
    torch.testing.assert_close(embedding, encoder.encode_image_tensor(pixels.detach()), atol=0.05, rtol=0)


def test_bad_input_and_unsupported_preprocessing_are_clear_errors(encoders):
    from torchvision import transforms as T

    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        encoders["toy"].encode_image_tensor(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="cannot do"):
        PixelPreprocess.from_torchvision(T.Compose([T.Resize(32), T.RandomHorizontalFlip()]))


def test_shortest_edge_resize_keeps_the_aspect_ratio():
    preprocess = PixelPreprocess(resize=16, interpolation="bicubic", antialias=True, crop=(16, 16),
                                 mean=(0.5,) * 3, std=(0.5,) * 3)  # fmt: skip
    assert preprocess._output_size(torch.Size([32, 48])) == (16, 24)
    assert preprocess(torch.zeros(2, 3, 32, 48)).shape == (2, 3, 16, 16)
