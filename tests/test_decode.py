"""Decoding and the reasons given for bad images."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from clipgen.data.decode import BadImageError, BadSample, BadSampleLog, decode_rgb, probe_image
from data_helpers import image_bytes, truncated_jpeg


@pytest.mark.parametrize(
    "data, reason",
    [(b"", "empty file (0 bytes)"), (b"<html>404</html>", "not an image"), (truncated_jpeg(), "truncated image")],
)
def test_bad_bytes_give_a_short_reason(data, reason):
    with pytest.raises(BadImageError, match=re.escape(reason)):
        decode_rgb(data)
    with pytest.raises(BadImageError, match=re.escape(reason)):
        probe_image(data)


def test_probe_names_the_extension_to_store():
    assert probe_image(image_bytes("JPEG")).ext == "jpg"
    assert probe_image(image_bytes("WEBP")).ext == "webp"
    assert probe_image(image_bytes("BMP")).ext is None  # re-encoded to PNG by convert


def test_transparency_is_flattened_onto_white():
    out = io.BytesIO()
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(out, format="PNG")
    assert decode_rgb(out.getvalue()).getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    assert decode_rgb(out.getvalue()).size == (20, 40)


def test_large_jpegs_may_be_decoded_at_a_reduced_scale_but_never_below_min_side():
    data = image_bytes("JPEG", size=(1600, 1200))
    assert decode_rgb(data).size == (1600, 1200)
    reduced = decode_rgb(data, min_side=256)
    assert 256 <= min(reduced.size) < 1200


def test_bad_sample_log_counts_every_skip_and_lists_each_once():
    log = BadSampleLog()
    bad = BadSample("s.tar", "k", "truncated image")
    assert log.record(bad) is True and log.record(bad) is False
    assert log.count == 2 and log.items == [{"shard": "s.tar", "key": "k", "reason": "truncated image"}]
