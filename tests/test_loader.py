"""The training/eval reader: splitting across ranks and workers, determinism, resuming, and the
bad-sample policy."""

from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from clipgen.data.shapes_shards import make_shapes
from clipgen.data import loader as loader_module
from clipgen.data.loader import ImageDataConfig, expand_shards, make_image_loader
from data_helpers import image_bytes, truncated_jpeg, write_tar

N_IMAGES, SHARD_SIZE = 60, 10  # -> 6 shards


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    make_shapes(out, N_IMAGES, shard_size=SHARD_SIZE)
    return out


@pytest.fixture
def decodes(monkeypatch):
    """A list that grows by one at each image the loader decodes."""
    decoded = []
    real_decode = loader_module.decode_rgb
    monkeypatch.setattr(loader_module, "decode_rgb", lambda data, **kw: decoded.append(1) or real_decode(data, **kw))
    return decoded


def all_keys():
    return {f"{i:08d}" for i in range(N_IMAGES)}


def collect(loader, limit=None):
    return list(itertools.islice(loader, limit))


def keys_of(batches):
    return [k for b in batches for k in b["key"]]


def eval_keys(shards, rank, world_size, num_workers, batch_size=7):
    cfg = ImageDataConfig(shards=str(shards), num_workers=num_workers)
    loader = make_image_loader(cfg, batch_size=batch_size, seed=0, rank=rank, world_size=world_size, train=False)
    return keys_of(collect(loader))


# ---------------------------------------------------------------- eval: every sample exactly once


def test_eval_reads_every_sample_once_with_metadata(shapes_dir):
    cfg = ImageDataConfig(shards=str(shapes_dir), image_size=32)
    batches = collect(make_image_loader(cfg, batch_size=16, seed=0, train=False))
    assert [len(b["key"]) for b in batches] == [16, 16, 16, 12]  # the last partial batch is kept
    assert keys_of(batches) == sorted(all_keys())  # no shuffle in eval: shard order
    image = batches[0]["image"]
    assert image.shape == (16, 3, 32, 32) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    assert batches[0]["meta"][0]["labels"]["colour"]


@pytest.mark.parametrize("world_size, num_workers", [(1, 2), (3, 2), (2, 1), (4, 2), (7, 1)])
def test_ranks_and_workers_together_see_each_sample_exactly_once(shapes_dir, world_size, num_workers):
    # 6 shards; (4, 2) and (7, 1) leave some rank/worker pairs with no shard at all
    per_rank = [eval_keys(shapes_dir, rank, world_size, num_workers) for rank in range(world_size)]
    everything = [k for keys in per_rank for k in keys]
    assert len(everything) == N_IMAGES and set(everything) == all_keys()
    for a, b in itertools.combinations(per_rank, 2):
        assert not set(a) & set(b)


# ---------------------------------------------------------------- train: determinism


def train_loader(shards, seed=0, epoch=0, rank=0, world_size=1, num_workers=0, **cfg_overrides):
    cfg = ImageDataConfig(shards=str(shards), num_workers=num_workers, **cfg_overrides)
    return make_image_loader(cfg, batch_size=8, seed=seed, rank=rank, world_size=world_size, train=True, epoch=epoch)


def same_batches(a, b):
    return keys_of(a) == keys_of(b) and all(torch.equal(x["image"], y["image"]) for x, y in zip(a, b))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_shuffling_and_augmentation_are_deterministic_by_seed(shapes_dir, num_workers):
    first = collect(train_loader(shapes_dir, seed=1, num_workers=num_workers), 12)
    again = collect(train_loader(shapes_dir, seed=1, num_workers=num_workers), 12)
    other_seed = collect(train_loader(shapes_dir, seed=2, num_workers=num_workers), 12)
    other_epoch = collect(train_loader(shapes_dir, seed=1, epoch=1, num_workers=num_workers), 12)
    assert same_batches(first, again)
    assert keys_of(first) != keys_of(other_seed)
    assert keys_of(first) != keys_of(other_epoch)
    assert keys_of(first[:2]) != sorted(keys_of(first[:2]))  # actually shuffled


def test_train_stream_is_endless_and_iterating_again_replays_it(shapes_dir):
    loader = train_loader(shapes_dir)
    batches = collect(loader, 20)  # 160 samples from 60 images: shards are resampled
    assert len(batches) == 20 and all(len(b["key"]) == 8 for b in batches)
    assert same_batches(batches, collect(loader, 20))


def test_flip_and_random_crop_follow_the_config(tmp_path):
    wide = [{"__key__": f"k{i}", "png": image_bytes("PNG", size=(48, 24), colour=(i, 0, 0))} for i in range(8)]
    write_tar(tmp_path / "s.tar", wide)
    cfg = ImageDataConfig(shards=str(tmp_path / "s.tar"), image_size=16, crop="random", flip=True)
    (batch,) = collect(make_image_loader(cfg, batch_size=8, seed=0, train=True), 1)
    assert batch["image"].shape == (8, 3, 16, 16)


def test_non_resampled_training_deals_shards_to_ranks_without_overlap(shapes_dir):
    # shards are shuffled per pass and dealt round-robin: with 6 shards and 2 ranks, the first 3
    # shards each rank reads (= 30 samples) are disjoint and cover everything
    per_rank = []
    for rank in range(2):
        cfg = ImageDataConfig(shards=str(shapes_dir), resampled=False, shuffle=False)
        loader = make_image_loader(cfg, batch_size=10, seed=5, rank=rank, world_size=2, train=True)
        per_rank.append(set(keys_of(collect(loader, 3))))
    assert len(per_rank[0]) == len(per_rank[1]) == 30
    assert per_rank[0] | per_rank[1] == all_keys()


# ---------------------------------------------------------------- resuming


def batches_with_positions(loader, n):
    out = []
    for batch in itertools.islice(loader, n):
        out.append((batch, loader.position))
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_loader_started_at_a_position_continues_the_exact_batch_sequence(shapes_dir, num_workers):
    # batches of 8 from shards of 10: positions fall mid-shard and at every worker's turn
    full = batches_with_positions(train_loader(shapes_dir, seed=3, num_workers=num_workers), 9)
    cfg = ImageDataConfig(shards=str(shapes_dir), num_workers=num_workers)
    for done in (1, 4, 5):
        resumed = make_image_loader(cfg, batch_size=8, seed=3, train=True, start=full[done - 1][1])
        assert same_batches(collect(resumed, 9 - done), [b for b, _ in full[done:]])


def test_resuming_reads_no_sample_before_the_position(shapes_dir, decodes):
    full = batches_with_positions(train_loader(shapes_dir, seed=3), 30)  # 240 samples: 24 shards
    decodes.clear()
    cfg = ImageDataConfig(shards=str(shapes_dir))
    (batch,) = collect(make_image_loader(cfg, batch_size=8, seed=3, train=True, start=full[28][1]), 1)
    assert keys_of([batch]) == keys_of([full[29][0]])
    assert len(decodes) == 8  # the batch itself, nothing before it


def test_positions_carry_over_bad_samples_and_reports(shards_with_bad_samples):
    cfg = ImageDataConfig(shards=str(shards_with_bad_samples), crop="center", flip=False)
    full = batches_with_positions(make_image_loader(cfg, batch_size=2, seed=1, train=True), 12)
    for done in (1, 2, 3, 7):
        resumed = make_image_loader(cfg, batch_size=2, seed=1, train=True, start=full[done - 1][1])
        assert same_batches(collect(resumed, 12 - done), [b for b, _ in full[done:]])


def test_a_position_for_other_workers_is_refused(shapes_dir):
    position = train_loader(shapes_dir, num_workers=2).position
    with pytest.raises(ValueError, match="2 workers"):
        make_image_loader(ImageDataConfig(shards=str(shapes_dir)), batch_size=8, seed=0, start=position)


# ---------------------------------------------------------------- bad samples


@pytest.fixture
def shards_with_bad_samples(tmp_path):
    def good(i):
        return {"__key__": f"good{i}", "png": image_bytes("PNG"), "json": json.dumps({"i": i}).encode()}

    write_tar(tmp_path / "shard-000000.tar", [
        good(0),
        {"__key__": "truncated", "jpg": truncated_jpeg()},
        good(1),
        {"__key__": "empty", "jpg": b""},
        good(2),
    ])
    write_tar(tmp_path / "shard-000001.tar", [
        {"__key__": "text", "png": b"hello, not a png"},
        good(3),
        {"__key__": "caption_only", "json": b"{}"},
        good(4),
        {"__key__": "badjson", "png": image_bytes("PNG"), "json": b"{not json"},
    ])
    return tmp_path


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_samples_are_skipped_counted_and_reported(shards_with_bad_samples, num_workers, caplog):
    cfg = ImageDataConfig(shards=str(shards_with_bad_samples), num_workers=num_workers)
    loader = make_image_loader(cfg, batch_size=2, seed=0, train=False)
    with caplog.at_level(logging.WARNING, logger="clipgen.data"):
        batches = collect(loader)
    assert sorted(keys_of(batches)) == ["badjson", "good0", "good1", "good2", "good3", "good4"]
    assert {k: m for b in batches for k, m in zip(b["key"], b["meta"])}["badjson"] == {}
    assert loader.bad_samples.count == 4
    items = {item["key"]: item for item in loader.bad_samples.items}
    assert set(items) == {"truncated", "empty", "text", "caption_only"}
    assert items["truncated"]["shard"].endswith("shard-000000.tar")
    assert items["text"]["shard"].endswith("shard-000001.tar")
    assert items["empty"]["reason"] == "empty file (0 bytes)"
    assert "no image" in items["caption_only"]["reason"]
    skip_logs = [r.getMessage() for r in caplog.records if "skipped bad sample" in r.getMessage()]
    assert len(skip_logs) == 4 and any("truncated" in m and "shard-000000.tar" in m for m in skip_logs)


@pytest.mark.parametrize("cut", ["inside a member", "at a block boundary"])
def test_a_truncated_shard_is_reported_and_the_others_read(shapes_dir, tmp_path, cut):
    data = (shapes_dir / "shard-000000.tar").read_bytes()
    end = len(data) // 2 // 512 * 512 + (100 if cut == "inside a member" else 0)
    (tmp_path / "a-broken.tar").write_bytes(data[:end])
    (tmp_path / "b-good.tar").write_bytes((shapes_dir / "shard-000001.tar").read_bytes())
    loader = make_image_loader(ImageDataConfig(shards=str(tmp_path)), batch_size=4, seed=0, train=False)
    keys = keys_of(collect(loader))
    assert {f"{i:08d}" for i in range(10, 20)} <= set(keys)  # the good shard, complete
    assert 0 < len(keys) - 10 < 10  # the broken shard's first samples are kept
    reasons = [item["reason"] for item in loader.bad_samples.items]
    assert any("unreadable shard" in r or "truncated" in r for r in reasons), reasons
    assert all(item["shard"].endswith("a-broken.tar") for item in loader.bad_samples.items)


def test_a_train_stream_with_nothing_decodable_fails_instead_of_hanging(tmp_path, monkeypatch):
    write_tar(tmp_path / "bad.tar", [{"__key__": f"k{i}", "jpg": b""} for i in range(5)])
    write_tar(tmp_path / "empty.tar", [])
    monkeypatch.setattr(loader_module, "MAX_CONSECUTIVE_BAD_SAMPLES", 50)
    loader = make_image_loader(ImageDataConfig(shards=str(tmp_path)), batch_size=4, seed=0, train=True)
    with pytest.raises(RuntimeError, match="no decodable image"):
        collect(loader, 1)
    assert loader.bad_samples.count > 50
    reasons = sorted(item["reason"] for item in loader.bad_samples.items)  # each distinct item once
    assert reasons == ["empty file (0 bytes)"] * 5 + ["shard holds no samples"]


# ---------------------------------------------------------------- shard specs


def test_shard_specs_expand_and_missing_paths_are_named(shapes_dir, tmp_path):
    brace = str(shapes_dir / "shard-{000000..000002}.tar")
    assert len(expand_shards(brace)) == 3
    listed = f"{shapes_dir / 'shard-000004.tar'},{brace}"
    assert [p[-10:] for p in expand_shards(listed)] == ["000004.tar", "000000.tar", "000001.tar", "000002.tar"]
    assert len(expand_shards(str(shapes_dir / "shard-*.tar"))) == 6
    with pytest.raises(FileNotFoundError, match="nowhere"):
        expand_shards(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"shard-000006.tar \(and 3 more"):
        expand_shards(str(shapes_dir / "shard-{000000..000009}.tar"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .tar shards"):
        make_image_loader(ImageDataConfig(shards=str(tmp_path / "empty")), batch_size=2, seed=0)
    with pytest.raises(FileNotFoundError, match="no shards given"):
        make_image_loader(ImageDataConfig(), batch_size=2, seed=0)


def test_config_loads_through_the_shared_config_mechanism():
    from clipgen.config import ConfigError, load_config

    cfg = load_config(ImageDataConfig, None, ["shards=a/s-{0..3}.tar", "crop=center", "num_workers=2"])
    assert (cfg.shards, cfg.crop, cfg.num_workers) == ("a/s-{0..3}.tar", "center", 2)
    with pytest.raises(ConfigError, match="crop"):
        load_config(ImageDataConfig, None, ["crop=middle"])


def test_the_decoded_image_cache_changes_no_batch_and_decodes_each_image_once(shapes_dir, decodes):
    batches = 3 * N_IMAGES // 4  # three passes over the corpus in batches of 4
    plain = collect(make_image_loader(ImageDataConfig(shards=str(shapes_dir)), batch_size=4, seed=5), batches)
    decodes.clear()
    cached = collect(make_image_loader(ImageDataConfig(shards=str(shapes_dir), decoded_cache_mb=1), batch_size=4, seed=5), batches)
    assert keys_of(plain) == keys_of(cached) and all(torch.equal(a["image"], b["image"]) for a, b in zip(plain, cached))
    assert len(decodes) == N_IMAGES  # three epochs, one decode each
    decodes.clear()
    tiny = collect(make_image_loader(ImageDataConfig(shards=str(shapes_dir), decoded_cache_mb=0), batch_size=4, seed=5), batches)
    assert len(decodes) == 3 * N_IMAGES and keys_of(tiny) == keys_of(plain)  # 0: no cache at all


def test_without_random_crop_or_flip_the_cache_keeps_transformed_pixels_and_changes_no_batch(shapes_dir, decodes, monkeypatch):
    from clipgen.data.transforms import ImageTransform

    transformed = []
    real_pixels = ImageTransform.pixels
    monkeypatch.setattr(ImageTransform, "pixels", lambda self, *a: transformed.append(1) or real_pixels(self, *a))
    fixed = {"shards": str(shapes_dir), "crop": "center", "flip": False}  # the toy CLIP's settings
    batches = 3 * N_IMAGES // 4
    plain = collect(make_image_loader(ImageDataConfig(**fixed), batch_size=4, seed=5), batches)
    decodes.clear(), transformed.clear()
    cached = collect(make_image_loader(ImageDataConfig(**fixed, decoded_cache_mb=1), batch_size=4, seed=5), batches)
    assert keys_of(plain) == keys_of(cached) and all(torch.equal(a["image"], b["image"]) for a, b in zip(plain, cached))
    assert len(decodes) == N_IMAGES
    assert len(transformed) == N_IMAGES  # resized and cropped once too: the pixels are what is kept


def test_the_cache_keeps_what_was_made_until_its_budget_is_spent():
    from clipgen.data.decoded_cache import DecodedImageCache

    cache = DecodedImageCache(budget_mb=1)
    made = []

    def make(side):
        made.append(side)
        return np.zeros((side, side, 3), dtype=np.uint8) if side > 32 else Image.new("RGB", (side, side))

    assert cache.get("s.tar", "a", lambda: make(32)) is cache.get("s.tar", "a", lambda: make(32))
    assert cache.get("s.tar", "b", lambda: make(600)).shape == (600, 600, 3)  # 1 MB: past the budget
    cache.get("s.tar", "b", lambda: make(600))
    assert made == [32, 600, 600]  # the image once, the large array each time
    assert cache.used_bytes == 32 * 32 * 3 and list(cache.entries) == [("s.tar", "a")]
