"""Shard writing: key sanitising, no empty tars, shard splitting, the manifest."""

from __future__ import annotations

import json

import pytest
import webdataset as wds

from clipgen.data.shards import MANIFEST_NAME, ShardSetWriter, read_manifest, sanitize_key
from data_helpers import image_bytes


def read_samples(shard_dir):
    urls = sorted(str(p) for p in shard_dir.glob("*.tar"))
    return list(wds.tarfile_samples([{"url": u} for u in urls]))


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("cats/tabby.cat.01", "cats_tabby_cat_01"),
        ("a b/c", "a_b_c"),
        ("猫/小猫", "猫_小猫"),
        ("__meta__", "meta"),
        ("...", "sample"),
    ],
)
def test_sanitize_key_removes_dots_slashes_and_meta_prefixes(raw, expected):
    assert sanitize_key(raw) == expected


def test_sanitize_key_keeps_long_keys_short_and_distinct():
    a, b = sanitize_key("x" * 300 + "1"), sanitize_key("x" * 300 + "2")
    assert a != b
    assert len(a.encode()) <= 80 and len(b.encode()) <= 80


def test_nothing_written_leaves_no_tar(tmp_path):
    with ShardSetWriter(tmp_path / "out") as writer:
        writer.skip("k", "k.jpg", "truncated image")
    assert list((tmp_path / "out").glob("*.tar")) == []
    manifest = read_manifest(tmp_path / "out")
    assert manifest["written"] == 0 and manifest["shards"] == []
    assert manifest["skipped_items"] == [{"key": "k", "source": "k.jpg", "reason": "truncated image"}]


def test_samples_split_into_shards_and_read_back(tmp_path):
    out = tmp_path / "out"
    jpeg = image_bytes("JPEG")
    with ShardSetWriter(out, shard_size=2, source={"kind": "test"}) as writer:
        keys = [writer.add(f"dir/img.{i}", "jpg", jpeg, {"caption": f"第{i}张", "i": i}) for i in range(5)]
    assert keys == [f"dir_img_{i}" for i in range(5)]
    manifest = json.loads((out / MANIFEST_NAME).read_text("utf-8"))
    assert manifest["complete"] is True and manifest["source"] == {"kind": "test"}
    assert manifest["written"] == 5 and manifest["skipped"] == 0
    assert [(s["file"], s["samples"]) for s in manifest["shards"]] == [
        ("shard-000000.tar", 2), ("shard-000001.tar", 2), ("shard-000002.tar", 1)
    ]
    samples = read_samples(out)
    # webdataset groups files by key; a dot left in a key would have split these samples apart
    assert [s["__key__"] for s in samples] == keys
    assert all(s["jpg"] == jpeg for s in samples)
    assert [json.loads(s["json"])["caption"] for s in samples] == [f"第{i}张" for i in range(5)]


def test_keys_that_sanitise_alike_stay_distinct(tmp_path):
    with ShardSetWriter(tmp_path / "out") as writer:
        first = writer.add("a.b", "png", image_bytes("PNG"))
        second = writer.add("a_b", "png", image_bytes("PNG"))
    assert first != second
    assert len(read_samples(tmp_path / "out")) == 2


def test_refuses_to_mix_with_an_existing_shard_set(tmp_path):
    out = tmp_path / "out"
    with ShardSetWriter(out) as writer:
        writer.add("old", "png", image_bytes("PNG"))
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        ShardSetWriter(out)
    with ShardSetWriter(out, overwrite=True) as writer:
        writer.add("new", "png", image_bytes("PNG"))
    assert [s["__key__"] for s in read_samples(out)] == ["new"]
    assert (out / "notes.txt").read_text() == "keep me"  # only files the writer makes are replaced


def test_an_interrupted_write_still_leaves_readable_shards_and_a_manifest(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyError):
        with ShardSetWriter(out, shard_size=2) as writer:
            for i in range(3):
                writer.add(str(i), "png", image_bytes("PNG"))
            raise KeyError("boom")
    manifest = read_manifest(out)
    assert manifest["complete"] is False and "boom" in manifest["error"]
    assert manifest["written"] == 3 and len(read_samples(out)) == 3
