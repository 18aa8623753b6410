"""`clipgen convert` and `clipgen make-shapes` through the CLI entry point."""

from __future__ import annotations

import base64
import json
import pickle

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from clipgen import cli
from clipgen.data.decode import decode_rgb
from clipgen.data.ffrecord import write_ffrecord
from clipgen.data.shards import read_manifest
from data_helpers import decode_png, image_bytes, truncated_jpeg


@pytest.fixture
def clipgen_main():
    """The `clipgen` command as a function of its argument list."""
    return cli.main


def read_shards(out):
    urls = [{"url": str(p)} for p in sorted(out.glob("*.tar"))]
    return {s["__key__"]: s for s in wds.tarfile_samples(urls)}


def test_convert_folder_keeps_good_images_and_reports_bad_ones(tmp_path, clipgen_main, capsys):
    src, out = tmp_path / "images", tmp_path / "shards"
    (src / "sub").mkdir(parents=True)
    jpeg, png, bmp = image_bytes("JPEG"), image_bytes("PNG", colour=(1, 2, 3)), image_bytes("BMP", colour=(9, 8, 7))
    (src / "good.jpg").write_bytes(jpeg)
    (src / "sub" / "photo.v2.png").write_bytes(png)
    (src / "old.bmp").write_bytes(bmp)
    (src / "actually_png.jpg").write_bytes(png)  # wrong extension: stored by its real format
    (src / "truncated.jpg").write_bytes(truncated_jpeg())
    (src / "empty.jpg").write_bytes(b"")
    (src / "text.png").write_text("this is not an image")
    (src / "readme.txt").write_text("listed: not an image extension")

    status = clipgen_main(["convert", "folder", str(src), "--out", str(out), "--shard-size", "2"])
    printed = capsys.readouterr().out

    assert status == 0
    manifest = read_manifest(out)
    assert manifest["written"] == 4 and manifest["skipped"] == 4
    reasons = {item["source"]: item["reason"] for item in manifest["skipped_items"]}
    assert reasons == {
        "empty.jpg": "empty file (0 bytes)",
        "readme.txt": "not an image file extension (.txt)",
        "text.png": "not an image (unrecognised format)",
        "truncated.jpg": "truncated image",
    }
    for name in reasons:
        assert name in printed
    assert [s["samples"] for s in manifest["shards"]] == [2, 2]

    samples = read_shards(out)
    assert set(samples) == {"good", "sub_photo_v2", "old", "actually_png"}
    assert samples["good"]["jpg"] == jpeg  # original bytes, not re-encoded
    assert samples["sub_photo_v2"]["png"] == png
    assert samples["actually_png"]["png"] == png
    assert decode_png(samples["old"]["png"]).convert("RGB").getpixel((0, 0)) == (9, 8, 7)  # BMP -> lossless PNG
    assert json.loads(samples["old"]["json"]) == {"source": "old.bmp", "reencoded_from": "BMP"}
    assert json.loads(samples["sub_photo_v2"]["json"]) == {"source": "sub/photo.v2.png"}


def test_convert_folder_takes_gif_tiff_and_16_bit_png_and_names_every_file_it_leaves(tmp_path, clipgen_main, capsys):
    src, out = tmp_path / "images", tmp_path / "shards"
    src.mkdir()
    png = image_bytes("PNG", colour=(1, 2, 3))
    (src / "plain.png").write_bytes(png)
    frames = [Image.new("RGB", (6, 4), colour) for colour in [(255, 0, 0), (0, 255, 0)]]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (6, 4), (10, 20, 30)).save(src / "scan.TIF")
    grey16 = np.full((4, 6), 32768, np.uint16)
    grey16[0, 0] = 65535
    Image.fromarray(grey16).save(src / "deep.png")  # 16-bit grey: decoded mid-grey, not white
    (src / "notes.md").write_text("a stray file")
    (src / "plain.txt").write_text("a caption beside plain.png: a sidecar, not a stray")
    (src / "scan.TIF.json").write_text("{}")
    (src / ".DS_Store").write_bytes(b"\0")

    assert clipgen_main(["convert", "folder", str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    manifest = read_manifest(out)
    assert manifest["written"] == 4
    assert manifest["skipped_items"] == [{"key": "notes", "source": "notes.md", "reason": "not an image file extension (.md)"}]
    assert "skipped notes.md: not an image file extension (.md)" in printed

    samples = read_shards(out)
    assert samples["plain"]["png"] == png and samples["deep"]["png"] == (src / "deep.png").read_bytes()
    assert json.loads(samples["anim"]["json"]) == {"source": "anim.gif", "reencoded_from": "GIF", "first_frame_of": 2}
    assert json.loads(samples["scan"]["json"]) == {"source": "scan.TIF", "reencoded_from": "TIFF"}
    assert decode_rgb(samples["anim"]["png"]).getpixel((0, 0)) == (255, 0, 0)
    assert decode_rgb(samples["scan"]["png"]).getpixel((0, 0)) == (10, 20, 30)
    deep = decode_rgb(samples["deep"]["png"])
    assert deep.getpixel((1, 1)) == (128, 128, 128) and deep.getpixel((0, 0)) == (255, 255, 255)


def test_convert_tsv_round_trip(tmp_path, clipgen_main):
    images = [image_bytes("JPEG", colour=(i * 40, 0, 0)) for i in range(3)]
    lines = [f"{i}\t第{i}张图\t{base64.b64encode(b).decode()}" for i, b in enumerate(images)]
    lines.append("3\tbroken\tnot-base64!")
    (tmp_path / "data.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    status = clipgen_main(["convert", "tsv", str(tmp_path / "data.tsv"), "--out", str(tmp_path / "out")])
    assert status == 0
    samples = read_shards(tmp_path / "out")
    assert [samples[str(i)]["jpg"] for i in range(3)] == images
    assert json.loads(samples["1"]["json"])["caption"] == "第1张图"
    manifest = read_manifest(tmp_path / "out")
    assert manifest["skipped_items"][0]["source"] == "data.tsv:4"


def test_convert_ffrecord_skips_a_crc_corrupted_sample(tmp_path, clipgen_main):
    images = [image_bytes("PNG", colour=(i, i, i)) for i in range(4)]
    path = tmp_path / "train.ffr"
    write_ffrecord(path, images)
    raw = bytearray(path.read_bytes())
    raw[12 + 12 * 4 + len(images[0]) + 10] ^= 0x55  # inside sample 1
    path.write_bytes(bytes(raw))

    status = clipgen_main(["convert", "ffrecord", str(path), "--out", str(tmp_path / "out")])
    assert status == 0
    samples = read_shards(tmp_path / "out")
    assert sorted(samples) == ["train_00000000", "train_00000002", "train_00000003"]
    assert samples["train_00000002"]["png"] == images[2]
    (skipped,) = read_manifest(tmp_path / "out")["skipped_items"]
    assert skipped["source"] == "train.ffr#1" and "CRC" in skipped["reason"]


def test_convert_ffrecord_pickles_need_trust(tmp_path, clipgen_main, capsys):
    path = tmp_path / "imagenet.ffr"
    write_ffrecord(path, [pickle.dumps((Image.new("RGB", (5, 5), (7, 7, 7)), 3))])
    assert clipgen_main(["convert", "ffrecord", str(path), "--out", str(tmp_path / "refused")]) == 1
    assert "--trust-pickle" in capsys.readouterr().out
    status = clipgen_main(["convert", "ffrecord", str(path), "--out", str(tmp_path / "ok"), "--trust-pickle"])
    assert status == 0
    (sample,) = read_shards(tmp_path / "ok").values()
    assert json.loads(sample["json"])["label"] == 3


def test_missing_source_is_an_error_and_makes_no_output(tmp_path, clipgen_main, capsys):
    status = clipgen_main(["convert", "folder", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert status == 1
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_source_with_nothing_readable_is_an_error(tmp_path, clipgen_main, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.jpg").write_bytes(b"")
    status = clipgen_main(["convert", "folder", str(tmp_path / "src"), "--out", str(tmp_path / "out")])
    assert status == 1
    assert "nothing converted" in capsys.readouterr().err
    assert list((tmp_path / "out").glob("*.tar")) == []  # no empty tar left behind
    assert read_manifest(tmp_path / "out")["skipped"] == 1

    (tmp_path / "empty").mkdir()
    assert clipgen_main(["convert", "folder", str(tmp_path / "empty"), "--out", str(tmp_path / "out2")]) == 1
    assert "holds no images" in capsys.readouterr().err


def test_existing_output_and_misplaced_flags_are_refused(tmp_path, clipgen_main, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_bytes(image_bytes("PNG"))
    args = ["convert", "folder", str(tmp_path / "src"), "--out", str(tmp_path / "out")]
    assert clipgen_main(args) == 0
    assert clipgen_main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert clipgen_main(args + ["--overwrite"]) == 0
    assert clipgen_main(args + ["--trust-pickle"]) == 2


def test_make_shapes_cli(tmp_path, clipgen_main, capsys):
    out = tmp_path / "shapes"
    assert clipgen_main(["make-shapes", "--out", str(out), "--n", "25", "--size", "48", "--shard-size", "10"]) == 0
    manifest = read_manifest(out)
    assert manifest["written"] == 25 and [s["samples"] for s in manifest["shards"]] == [10, 10, 5]
    assert manifest["source"]["size"] == 48 and manifest["source"]["antialias"] is False
    sample = read_shards(out)["00000007"]
    assert decode_png(sample["png"]).size == (48, 48)
    assert set(json.loads(sample["json"])["labels"]) == {"colour", "shape", "size", "position"}
    assert clipgen_main(["make-shapes", "--out", str(tmp_path / "bad"), "--n", "5", "--size", "24"]) == 2
    assert "multiple of 16" in capsys.readouterr().err
