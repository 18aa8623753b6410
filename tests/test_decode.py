"""Decoding and the reasons given for bad images."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from clipgen.data.decode import BadImageError, BadSample, BadSampleLog, decode_rgb, probe_image, reencode_png
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


# ---------------------------------------------------------------- 16-bit and other modes

GRADIENT_16 = np.linspace(0, 65535, 256).round().astype(np.uint16)[None, :].repeat(3, axis=0)  # 3 x 256


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def png_16bit(values: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written by hand (PIL writes 16-bit grey only): colour type 0 grey, 2 RGB,
    6 RGBA; `values` [h, w] or [h, w, channels] uint16."""
    height, width = values.shape[:2]
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def assert_grey_levels(image: Image.Image, values16: np.ndarray) -> None:
    """Every channel within one level of the 16-bit value scaled to 8 bits (value / 257)."""
    pixels = np.asarray(image).astype(int)
    expected = np.rint(values16.astype(float) / 257)
    assert image.mode == "RGB" and pixels.shape[:2] == values16.shape
    assert np.abs(pixels - expected[..., None]).max() <= 1


@pytest.mark.parametrize(
    "data, pil_mode",
    [
        (encoded(Image.fromarray(GRADIENT_16), "PNG"), "I;16"),  # the 16-bit grey PNG of every scanner
        (encoded(Image.frombytes("I;16B", (256, 3), GRADIENT_16.astype(">u2").tobytes()), "TIFF"), "I;16B"),
        (encoded(Image.fromarray(GRADIENT_16.astype(np.int32)), "TIFF"), "I"),  # older Pillow's 16-bit PNGs too
    ],
    ids=["png", "tiff-big-endian", "tiff-32-bit"],
)
def test_16bit_grey_is_scaled_to_8_bits_not_clipped_to_white(data, pil_mode):
    assert probe_image(data).mode == pil_mode
    assert_grey_levels(decode_rgb(data), GRADIENT_16)
    mid_grey = np.full((2, 2), 32768, np.uint16)
    assert set(np.asarray(decode_rgb(encoded(Image.fromarray(mid_grey), "PNG"))).ravel()) == {128}


def test_16bit_rgb_pngs_decode_as_pil_reads_them_already():
    # PIL reads 48- and 64-bit PNGs as 8-bit RGB / RGBA itself (the high byte), so they needed no
    # fix; a grey comes out the same whichever way it was stored
    rgb = np.stack([GRADIENT_16] * 3, axis=-1)
    assert Image.open(io.BytesIO(png_16bit(rgb, 2))).mode == "RGB"
    assert_grey_levels(decode_rgb(png_16bit(rgb, 2)), GRADIENT_16)
    opaque = np.concatenate([rgb, np.full_like(rgb[..., :1], 65535)], axis=-1)
    assert_grey_levels(decode_rgb(png_16bit(opaque, 6)), GRADIENT_16)
    grey = png_16bit(GRADIENT_16, 0)
    assert np.array_equal(np.asarray(decode_rgb(grey)), np.asarray(decode_rgb(png_16bit(rgb, 2))))


def test_float_images_in_0_1_are_scaled():
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None, :]
    pixels = np.asarray(decode_rgb(encoded(Image.fromarray(ramp), "TIFF")))[0, :, 0]
    assert abs(int(pixels[128]) - 128) <= 1 and pixels[0] == 0 and pixels[-1] == 255


def test_reencode_keeps_16_bits_and_never_crashes_on_modes_png_cannot_hold():
    tiff16 = encoded(Image.fromarray(GRADIENT_16), "TIFF")
    png = Image.open(io.BytesIO(reencode_png(tiff16)))
    assert png.format == "PNG" and png.mode == "I;16" and np.array_equal(np.asarray(png), GRADIENT_16)
    int32 = Image.open(io.BytesIO(reencode_png(encoded(Image.fromarray(GRADIENT_16.astype(np.int32)), "TIFF"))))
    assert int32.mode == "I;16" and np.array_equal(np.asarray(int32), GRADIENT_16)  # lossless too
    cmyk = encoded(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "TIFF")  # PNG has no CMYK: once crashed convert
    assert decode_rgb(reencode_png(cmyk)).getpixel((0, 0)) == (255, 0, 0)
    ramp = encoded(Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32)[None, :]), "TIFF")
    assert decode_rgb(reencode_png(ramp)).getpixel((15, 0)) == (255, 255, 255)


def test_reencode_takes_the_first_frame_upright():
    frames = [Image.new("RGB", (8, 4), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    assert probe_image(out.getvalue()).frames == 2
    assert decode_rgb(reencode_png(out.getvalue())).getpixel((0, 0)) == (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (0, 0, 255)).save(out, format="TIFF", exif=exif)
    assert decode_rgb(out.getvalue()).size == (20, 40)
    assert decode_rgb(reencode_png(out.getvalue())).size == (20, 40)  # PNG keeps no orientation tag
