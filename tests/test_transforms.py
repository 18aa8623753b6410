"""Resize / crop / flip / scaling to [-1, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipgen.data.transforms import ImageTransform, resize_shorter_side


def test_values_map_0_255_to_minus_one_plus_one():
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[0, 0] = 255
    out = ImageTransform(4)(Image.fromarray(pixels))
    assert out.shape == (3, 4, 4)
    assert out[:, 0, 0].tolist() == [1.0, 1.0, 1.0] and out[:, 1, 1].tolist() == [-1.0, -1.0, -1.0]


def test_shorter_side_is_resized_keeping_the_aspect_ratio():
    assert resize_shorter_side(Image.new("RGB", (200, 100)), 32).size == (64, 32)
    assert resize_shorter_side(Image.new("RGB", (30, 90)), 60).size == (60, 180)


def test_center_crop_takes_the_middle():
    pixels = np.zeros((8, 24, 3), dtype=np.uint8)
    pixels[:, 8:16] = 255  # the middle third is white
    out = ImageTransform(8, "center")(Image.fromarray(pixels))
    assert torch.all(out == 1.0)


def test_random_crop_and_flip_need_and_use_the_rng():
    pixels = np.arange(8 * 24 * 3, dtype=np.uint8).reshape(8, 24, 3)
    transform = ImageTransform(8, "random", flip=True)
    with pytest.raises(ValueError, match="Generator"):
        transform(Image.fromarray(pixels))
    outs = {transform(Image.fromarray(pixels), np.random.default_rng(s)).numpy().tobytes() for s in range(20)}
    assert len(outs) > 5
    first = transform(Image.fromarray(pixels), np.random.default_rng(0))
    assert torch.equal(first, transform(Image.fromarray(pixels), np.random.default_rng(0)))
