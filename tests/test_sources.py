"""Input sources: folder walking, EasyNLP/MUGE TSV parsing, FFRecord reading/writing and the
pickle policy."""

from __future__ import annotations

import base64
import pickle
import struct
import zlib

import pytest
from PIL import Image

from clipgen.data.ffrecord import FFRecordError, FFRecordReader, write_ffrecord
from clipgen.data.sources import (
    SourceFailure,
    SourceImage,
    iter_ffrecord,
    iter_folder,
    iter_tsv,
    looks_like_pickle,
)
from data_helpers import decode_png, image_bytes

# ---------------------------------------------------------------- folder


def test_folder_is_walked_recursively_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for rel in ["b/2.png", "a/deep/1.JPG", "a/0.webp", "z.bmp"]:
        (tmp_path / rel).write_bytes(b"whatever")
    items = list(iter_folder(tmp_path))
    assert [i.origin for i in items] == ["a/0.webp", "a/deep/1.JPG", "b/2.png", "z.bmp"]
    assert [i.key for i in items] == ["a/0", "a/deep/1", "b/2", "z"]
    assert all(isinstance(i, SourceImage) and i.meta == {"source": i.origin} for i in items)


def test_folder_takes_gif_and_tiff_and_names_files_that_are_not_images(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    for rel in ["a.gif", "b.tif", "c.TIFF", "sub/d.png", "notes.txt", "sub/LICENSE", "sub/data.parquet",
                "sub/d.txt", "sub/d.json", "b.tif.xmp", ".DS_Store", ".git/objects/ab12", "sub/Thumbs.db"]:
        (tmp_path / rel).write_bytes(b"whatever")
    items = list(iter_folder(tmp_path))
    images = [i.origin for i in items if isinstance(i, SourceImage)]
    failures = {i.origin: (i.key, i.reason) for i in items if isinstance(i, SourceFailure)}
    assert images == ["a.gif", "b.tif", "c.TIFF", "sub/d.png"]
    # sidecars (sub/d.txt, sub/d.json, b.tif.xmp), hidden files and Thumbs.db are not reported
    assert failures == {
        "notes.txt": ("notes", "not an image file extension (.txt)"),
        "sub/LICENSE": ("sub/LICENSE", "not an image file extension (none)"),
        "sub/data.parquet": ("sub/data", "not an image file extension (.parquet)"),
    }
    assert [i.origin for i in items] == sorted(i.origin for i in items)  # one order, by path


def test_missing_or_wrong_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        iter_folder(tmp_path / "nope")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        iter_folder(tmp_path / "file.jpg")


# ---------------------------------------------------------------- TSV


def b64(data: bytes, urlsafe: bool = False) -> str:
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()


def test_tsv_lines_become_images_with_captions(tmp_path):
    jpeg, png = image_bytes("JPEG"), image_bytes("PNG")
    lines = [
        f"1001\t一只红色的猫\t{b64(jpeg)}",
        "",  # blank lines are ignored
        f"1002\t蓝天\t{b64(png, urlsafe=True).rstrip('=')}",  # Chinese-CLIP style: url-safe base64
        f"1003\t{b64(png)}",  # MUGE image-only file: idx, base64
        "1004\tno image here",
        "1005\tbad\t!!!notbase64!!!",
        "1006\ta\tb\tc",
    ]
    tsv = tmp_path / "data.tsv"
    tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = list(iter_tsv(tsv))
    good = [i for i in items if isinstance(i, SourceImage)]
    bad = [i for i in items if isinstance(i, SourceFailure)]
    assert [(i.key, i.data) for i in good] == [("1001", jpeg), ("1002", png), ("1003", png)]
    assert good[0].meta == {"caption": "一只红色的猫", "idx": "1001", "source": "data.tsv:1"}
    assert "caption" not in good[2].meta
    assert [i.origin for i in bad] == ["data.tsv:5", "data.tsv:6", "data.tsv:7"]
    assert "bad base64" in bad[1].reason and "3 tab-separated fields" in bad[2].reason
    # "1004\tno image here" parses as idx + base64 and fails in base64
    assert "base64" in bad[0].reason


def test_tsv_line_that_is_not_utf8_is_reported_not_fatal(tmp_path):
    tsv = tmp_path / "x.tsv"
    tsv.write_bytes(b"1\t\xff\xfe\t" + b64(image_bytes()).encode() + b"\n2\tok\t" + b64(image_bytes()).encode() + b"\n")
    items = list(iter_tsv(tsv))
    assert isinstance(items[0], SourceFailure) and "UTF-8" in items[0].reason
    assert isinstance(items[1], SourceImage)


def test_tsv_directory_prefixes_keys_with_the_file_name(tmp_path):
    for name in ("train", "valid"):
        (tmp_path / f"{name}.tsv").write_text(f"0\tcap\t{b64(image_bytes())}\n", encoding="utf-8")
    assert [i.key for i in iter_tsv(tmp_path)] == ["train/0", "valid/0"]
    with pytest.raises(FileNotFoundError):
        iter_tsv(tmp_path / "missing.tsv")


# ---------------------------------------------------------------- FFRecord format


def test_ffrecord_layout_matches_hfailab(tmp_path):
    """Header = crc32(N, sample crcs, offsets) | N | crcs | int64 offsets, little-endian; the
    header CRC covers bytes [4, 12 + 12N), as HFAiLab's writer.cpp/fileio.py compute it."""
    payloads = [b"first", b"", b"third sample"]
    path = tmp_path / "x.ffr"
    assert write_ffrecord(path, payloads) == 3
    raw = path.read_bytes()
    n = 3
    header_end = 12 + 12 * n
    header_crc, stored_n = struct.unpack("<IQ", raw[:12])
    assert stored_n == n
    assert header_crc == zlib.crc32(raw[4:header_end])
    crcs = struct.unpack(f"<{n}I", raw[12 : 12 + 4 * n])
    offsets = struct.unpack(f"<{n}q", raw[12 + 4 * n : header_end])
    assert crcs == tuple(zlib.crc32(p) for p in payloads)
    assert offsets == (header_end, header_end + 5, header_end + 5)
    assert raw[header_end:] == b"".join(payloads)
    with FFRecordReader(path) as reader:
        assert len(reader) == 3
        assert [reader.read(i) for i in range(3)] == payloads


def test_empty_ffrecord_round_trips(tmp_path):
    write_ffrecord(tmp_path / "e.ffr", [])
    with FFRecordReader(tmp_path / "e.ffr") as reader:
        assert len(reader) == 0 and list(reader.iter_samples()) == []


def corrupt_byte(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_corrupted_sample_is_reported_and_the_rest_still_read(tmp_path):
    path = tmp_path / "x.ffr"
    write_ffrecord(path, [b"aaaa", b"bbbb", b"cccc"])
    corrupt_byte(path, 12 + 12 * 3 + 5)  # inside sample 1
    with FFRecordReader(path) as reader:
        samples = list(reader.iter_samples())
        with pytest.raises(FFRecordError, match="CRC"):
            reader.read(1)
    assert [s.data for s in samples] == [b"aaaa", None, b"cccc"]
    assert "CRC mismatch" in samples[1].error


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[:7], "shorter than the 12-byte header"),
        (lambda raw: raw[:4] + struct.pack("<Q", 10**12) + raw[12:], "do not fit"),
        (lambda raw: raw[:14] + bytes([raw[14] ^ 1]) + raw[15:], "header CRC mismatch"),
    ],
)
def test_broken_header_is_a_clear_error_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "broken.ffr"
    write_ffrecord(path, [b"aaaa", b"bbbb"])
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(FFRecordError, match=message) as info:
        FFRecordReader(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- FFRecord source and pickles


def test_ffrecord_source_yields_image_payloads_and_reports_bad_ones(tmp_path):
    jpeg = image_bytes("JPEG")
    write_ffrecord(tmp_path / "a.ffr", [jpeg, jpeg, jpeg])
    corrupt_byte(tmp_path / "a.ffr", 12 + 12 * 3 + len(jpeg) + 100)  # inside sample 1
    (tmp_path / "b.ffr").write_bytes(b"garbage")
    items = list(iter_ffrecord(tmp_path))
    assert [type(i).__name__ for i in items] == ["SourceImage", "SourceFailure", "SourceImage", "SourceFailure"]
    assert items[0].key == "a/00000000" and items[0].data == jpeg and items[0].meta == {"source": "a.ffr#0"}
    assert items[1].origin == "a.ffr#1" and "CRC" in items[1].reason
    assert "b.ffr" in items[3].reason and "not a valid FFRecord" in items[3].reason


class _Exploit:
    """Unpickling this would create a file: proof that a pickle was (not) executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_payloads_are_refused_unless_trusted(tmp_path):
    image = Image.new("RGB", (8, 6), (1, 2, 3))
    marker = tmp_path / "pwned"
    payloads = [
        pickle.dumps((image, 7)),  # HFAiLab's ImageNet example: (PIL image, label)
        pickle.dumps({"image": image_bytes("JPEG"), "caption": "猫"}),
        pickle.dumps(_Exploit(marker)),
    ]
    write_ffrecord(tmp_path / "p.ffr", payloads)

    refused = list(iter_ffrecord(tmp_path / "p.ffr"))
    assert all(isinstance(i, SourceFailure) and "--trust-pickle" in i.reason for i in refused)
    assert not marker.exists()

    trusted = list(iter_ffrecord(tmp_path / "p.ffr", trust_pickle=True))
    first, second = trusted[0], trusted[1]
    assert isinstance(first, SourceImage) and first.meta["label"] == 7
    assert decode_png(first.data).getpixel((0, 0)) == (1, 2, 3)
    assert isinstance(second, SourceImage) and second.meta["caption"] == "猫"
    assert isinstance(trusted[2], SourceFailure)  # (the exploit ran: that is what trusting means)


def test_pickle_detection_does_not_mistake_images():
    assert looks_like_pickle(pickle.dumps((1, "a"), protocol=0))
    assert looks_like_pickle(pickle.dumps([1, 2], protocol=5))
    for fmt in ("JPEG", "PNG", "WEBP", "BMP"):
        assert not looks_like_pickle(image_bytes(fmt))
