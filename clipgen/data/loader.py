"""Reading webdataset image shards for training and evaluation.

    loader = make_image_loader(cfg, batch_size=64, seed=0, rank=rank, world_size=world, epoch=epoch)
    for batch in loader:   # {"image": FloatTensor[B,3,S,S] in [-1,1], "key": [...], "meta": [...]}
        ...

The pipeline, in each DataLoader worker (or in the main process when num_workers == 0):

    shard names -> this rank's share -> this worker's share -> tar samples -> shuffle buffer
      -> decode + transform -> batches of good samples (+ in-band reports of bad ones)

- train: an endless stream. With `resampled` the shard names are drawn with replacement, otherwise
  they are shuffled pass after pass; either way ONE global sequence, seeded by (seed, epoch), is
  dealt round-robin to ranks and then to workers, so every rank always has data (no DDP rank waits
  on uneven shards) and every worker gets different shards. The shuffle buffer and the random
  crop/flip are seeded by (seed, epoch, rank, worker): the whole stream is reproducible.
- eval: one pass, no resampling, no shuffle, centre crop, no flip. Shards are dealt round-robin to
  ranks, then to workers, so together they read every sample exactly once; with fewer shards than
  ranks x workers some get none. The last partial batch of each worker is kept.

Bad samples (zero bytes, truncated, not an image, an unreadable shard) never stop a run: the
decode step puts a `BadSample` record in the stream instead of the sample, the batching step
carries it along with the next batch, and the main process strips it off, records it in
`loader.bad_samples` and logs it once ("clipgen.data" logger) - so reports from worker processes
reach the main process.

Rank and world size are passed explicitly; nothing is read from the environment or from
torch.distributed (webdataset's split_by_node/split_by_worker would read RANK/WORKER variables).
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count, islice
from pathlib import Path
from typing import Any, Literal

import braceexpand
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, get_worker_info

from clipgen.data.decode import IMAGE_EXTENSIONS, BadImageError, BadSample, BadSampleLog, decode_rgb
from clipgen.data.transforms import ImageTransform

log = logging.getLogger("clipgen.data")

# Separate random streams derived from one seed, so that e.g. changing the shuffle buffer size
# does not change the crops.
_SHARD_ORDER, _SHUFFLE, _AUGMENT = 0, 1, 2
# A train stream where nothing decodes would otherwise spin forever without yielding a batch.
MAX_CONSECUTIVE_BAD_SAMPLES = 10_000


@dataclass
class ImageDataConfig:
    """Where the image shards are and how to turn them into training/eval batches.

    shards: a directory of .tar shards, a brace pattern "dir/shard-{000000..000009}.tar", a glob,
        or a comma-separated list of any of these.
    crop, flip: used in training only; evaluation always centre-crops and never flips.
    shuffle_buffer: samples held per worker for shuffling (0 or 1: no shuffling); training only.
    resampled: training: draw shards with replacement -> an endless stream that never leaves a DDP
        rank waiting on uneven shards. False: shuffled passes over the shards, still endless.
    """

    shards: str = ""
    image_size: int = 32
    crop: Literal["center", "random"] = "random"
    flip: bool = True
    shuffle_buffer: int = 1000
    num_workers: int = 0
    resampled: bool = True


# ---------------------------------------------------------------- shard lists


def _split_outside_braces(spec: str) -> list[str]:
    """Split at commas that are not inside {...}, so "a.tar,dir/s-{0..3}.tar,{x,y}.tar" works."""
    parts, depth, current = [], 0, []
    for char in spec:
        depth += (char == "{") - (char == "}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def expand_shards(spec: str) -> list[str]:
    """The shard files named by `spec` (see ImageDataConfig.shards), in order.

    Raises FileNotFoundError naming the first part of `spec` that matches no existing file."""
    if not spec.strip():
        raise FileNotFoundError("no shards given: set data.shards to a directory, pattern or list of .tar files")
    shards: list[str] = []
    for part in _split_outside_braces(spec):
        path = Path(part).expanduser()
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.tar"))
            if not found:
                raise FileNotFoundError(f"no .tar shards in directory {part}")
        elif any(c in part for c in "*?["):
            found = sorted(glob.glob(os.path.expanduser(part)))
            if not found:
                raise FileNotFoundError(f"no shards match {part}")
        else:
            found = [os.path.expanduser(p) for p in braceexpand.braceexpand(part)]
            missing = [p for p in found if not os.path.isfile(p)]
            if missing:
                more = f" (and {len(missing) - 1} more from {part!r})" if len(missing) > 1 else ""
                raise FileNotFoundError(f"shard not found: {missing[0]}{more}")
        shards.extend(found)
    return shards


# ---------------------------------------------------------------- pipeline stages
# Module-level classes and functools.partial, not lambdas, so the pipeline pickles into workers
# under any multiprocessing start method.


def derive_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from non-negative integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _same_for_all_workers() -> int:
    # ResampledShards mixes this into its seed; a constant keeps ONE global draw sequence that the
    # rank and worker stages then deal out, instead of an independent sequence per worker.
    return 0


class ShardNames:
    """The first stage: an iterator of {"url": shard} dicts (the format webdataset stages expect)."""

    def __init__(self, shards: list[str], *, train: bool, resampled: bool, seed: int):
        self.shards, self.train, self.resampled, self.seed = list(shards), train, resampled, seed

    def __call__(self) -> Iterator[dict]:
        if not self.train:
            return iter(wds.SimpleShardList(self.shards))
        if self.resampled:
            # Built afresh on every iteration: ResampledShards advances an internal epoch counter
            # each time it is iterated, which would make a second pass differ from the first.
            return iter(wds.ResampledShards(
                self.shards, seed=self.seed, worker_seed=_same_for_all_workers, deterministic=True
            ))
        return self._shuffled_passes()

    def _shuffled_passes(self) -> Iterator[dict]:
        for number in count():
            yield from wds.SimpleShardList(self.shards, seed=derive_seed(self.seed, number))


def take_share(items: Iterator, index: int, total: int) -> Iterator:
    """Every `total`-th item starting at `index`: one rank's (or worker's) share."""
    return islice(items, index, None, total)


def take_worker_share(items: Iterator) -> Iterator:
    worker, num_workers = _worker()
    return take_share(items, worker, num_workers)


def _tar_ends_properly(path: str) -> bool:
    """Whether a local tar ends with its end-of-archive marker (two zero blocks, then padding).

    Python's streaming tar reader takes a file cut at a 512-byte boundary for a normal end, so
    without this check a truncated shard would silently lose its tail."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size % 512 or size < 1024:
                return False
            f.seek(size - 1024)
            return not any(f.read(1024))
    except OSError:
        return True  # not a local file (a URL, a pipe): nothing to check; read errors show anyway


def read_shards(shard_dicts: Iterator[dict]) -> Iterator[dict | BadSample]:
    """Samples of each shard in turn; a shard that cannot be opened or read to the end becomes a
    BadSample (the samples read from it before the damage are kept) and the next shard follows.

    webdataset's own `handler=` options do not fit: `reraise_exception` (the default) ends the
    run, `ignore_and_continue` hides the loss, and `warn_and_continue` warns only inside the
    worker process and sleeps 0.5 s per error. Each shard is read with the re-raising handler and
    the error is caught here, per shard, so it can travel in-band to the main process."""
    for shard in shard_dicts:
        url = shard["url"]
        last_key = None
        try:
            for sample in wds.tarfile_samples([{"url": url}]):
                last_key = sample.get("__key__")
                yield sample
        except Exception as err:  # noqa: BLE001 - tarfile/OS errors vary; a bad shard is bad data
            where = f"after key {last_key}" if last_key else "before the first sample"
            message = err.args[0] if err.args else err  # webdataset appends stream objects to args
            yield BadSample(url, None, f"unreadable shard ({where}): {type(err).__name__}: {message}")
            continue
        if last_key is None:
            # Reported because an endless training stream over empty shards would otherwise spin
            # forever without a batch or a word.
            yield BadSample(url, None, "shard holds no samples")
        elif not _tar_ends_properly(url):
            yield BadSample(url, None, f"shard is truncated (no end-of-archive marker after key {last_key}); "
                                       "samples after it are missing")


class SeededShuffle:
    """webdataset's buffer shuffle with an rng seeded per (seed, epoch, rank, worker)."""

    def __init__(self, buffer_size: int, seed: int, epoch: int, rank: int):
        self.buffer_size, self.seed, self.epoch, self.rank = buffer_size, seed, epoch, rank

    def __call__(self, samples: Iterator) -> Iterator:
        rng = random.Random(derive_seed(self.seed, self.epoch, self.rank, _worker()[0], _SHUFFLE))
        return wds.shuffle(self.buffer_size, initial=min(100, self.buffer_size), rng=rng)(samples)


def _image_bytes(sample: dict) -> bytes | None:
    for ext in IMAGE_EXTENSIONS:
        if ext in sample:
            return sample[ext]
    return None


def _parse_meta(sample: dict) -> dict:
    raw = sample.get("json")
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        # The image is fine, so the sample is kept; only its metadata is lost, and said so.
        log.warning("ignoring unreadable json of %s in %s: %s", sample.get("__key__"), sample.get("__url__"), err)
        return {}
    return meta if isinstance(meta, dict) else {"value": meta}


class DecodeAndTransform:
    """Raw tar sample -> {"image", "key", "meta"}, or a BadSample when the image cannot be decoded.

    Only decoding failures become BadSamples: an exception in the transform is a bug and is
    raised, so that a broken transform cannot silently turn every sample into a "bad" one."""

    def __init__(self, transform: ImageTransform, seed: int, epoch: int, rank: int):
        self.transform, self.seed, self.epoch, self.rank = transform, seed, epoch, rank

    def __call__(self, samples: Iterator) -> Iterator[dict | BadSample]:
        needs_rng = self.transform.crop == "random" or self.transform.flip
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, _worker()[0], _AUGMENT]) if needs_rng else None
        for sample in samples:
            if isinstance(sample, BadSample):
                yield sample
                continue
            key, shard = sample.get("__key__"), sample.get("__url__", "?")
            data = _image_bytes(sample)
            if data is None:
                present = sorted(k for k in sample if not k.startswith("__"))
                yield BadSample(shard, key, f"no image in sample (has: {', '.join(present) or 'nothing'})")
                continue
            try:
                image = decode_rgb(data, min_side=self.transform.size)
            except BadImageError as err:
                yield BadSample(shard, key, str(err))
                continue
            yield {"image": self.transform(image, rng), "key": key, "meta": _parse_meta(sample)}


def _collate(good: list[dict], bad: list[BadSample], image_size: int) -> dict:
    # np.stack rather than torch.stack: same result, without torch's thread pool (see
    # transforms.to_signed_tensor for why that matters here).
    if good:
        images = torch.from_numpy(np.stack([s["image"].numpy() for s in good]))
    else:
        images = torch.empty(0, 3, image_size, image_size)
    return {"image": images, "key": [s["key"] for s in good], "meta": [s["meta"] for s in good], "bad": bad}


class BatchGoodSamples:
    """Batches of `batch_size` good samples; BadSamples ride along in the batch's "bad" list.

    Counting only good samples keeps every batch full. Reports are flushed in an image-less batch
    when they pile up, so a run of bad samples is reported promptly and cannot grow without bound."""

    def __init__(self, batch_size: int, keep_partial: bool, image_size: int):
        self.batch_size, self.keep_partial, self.image_size = batch_size, keep_partial, image_size

    def __call__(self, samples: Iterator) -> Iterator[dict]:
        good: list[dict] = []
        bad: list[BadSample] = []
        for sample in samples:
            if isinstance(sample, BadSample):
                bad.append(sample)
                if len(bad) >= self.batch_size:
                    yield _collate([], bad, self.image_size)
                    bad = []
                continue
            good.append(sample)
            if len(good) == self.batch_size:
                yield _collate(good, bad, self.image_size)
                good, bad = [], []
        if good and not self.keep_partial:
            good = []  # training wants full batches; the remainder of a finished stream is dropped
        if good or bad:
            yield _collate(good, bad, self.image_size)


def _as_is(batch: Any) -> Any:
    # DataLoader's default conversion would walk the batch; it is already in its final form.
    return batch


# ---------------------------------------------------------------- the loader


class ImageLoader:
    """Iterable of image batches; see the module docstring. Iterating again replays the same
    stream (same seed, epoch and rank). `skip(n)` drops the first n batches of the next iteration,
    which is how a resumed run picks up mid-epoch: the batches that follow are exactly those the
    interrupted run would have seen (the skipped ones are still read and decoded, not stored)."""

    def __init__(self, pipeline: wds.DataPipeline, *, shards: list[str], batch_size: int,
                 num_workers: int, endless: bool, pin_memory: bool = False, skip_batches: int = 0):
        self.pipeline = pipeline
        self.endless = endless
        self.shards = shards
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.bad_samples = BadSampleLog()
        self._skip = 0
        self.skip(skip_batches)

    def skip(self, n: int) -> ImageLoader:
        if n < 0:
            raise ValueError(f"cannot skip a negative number of batches ({n})")
        self._skip = n
        return self

    def _record(self, bad: BadSample) -> None:
        if self.bad_samples.record(bad):
            log.warning("skipped bad sample %s in shard %s: %s", bad.key, bad.shard, bad.reason)

    def __iter__(self) -> Iterator[dict]:
        # Every random choice in the pipeline is seeded explicitly. A private generator keeps the
        # DataLoader from drawing its base seed from the global torch RNG, which would shift the
        # training stream's randomness (e.g. dead-code restarts) between a run and its resumption.
        loader = DataLoader(self.pipeline, batch_size=None, num_workers=self.num_workers,
                            collate_fn=_as_is, pin_memory=self.pin_memory,
                            generator=torch.Generator().manual_seed(0))
        to_skip, self._skip = self._skip, 0
        consecutive_bad = 0
        for batch in loader:
            bad = batch.pop("bad")
            for item in bad:
                self._record(item)
            if not batch["key"]:
                consecutive_bad += len(bad)
                if self.endless and consecutive_bad > MAX_CONSECUTIVE_BAD_SAMPLES:
                    raise RuntimeError(
                        f"no decodable image in the last {consecutive_bad} samples of {len(self.shards)} shard(s) "
                        f"(last: {bad[-1].as_dict()}); the data is broken"
                    )
                continue
            consecutive_bad = 0
            if to_skip:
                to_skip -= 1
                continue
            yield batch


def make_image_loader(cfg: ImageDataConfig, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                      train: bool = True, epoch: int = 0, skip_batches: int = 0,
                      pin_memory: bool = False) -> ImageLoader:
    """Build the loader for one (seed, epoch, rank); see the module docstring for the semantics."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
    if cfg.num_workers < 0:
        raise ValueError(f"num_workers must be non-negative, got {cfg.num_workers}")
    shards = expand_shards(cfg.shards)
    if train:
        transform = ImageTransform(cfg.image_size, cfg.crop, cfg.flip)
    else:
        transform = ImageTransform(cfg.image_size, "center", False)
    stages: list = [
        ShardNames(shards, train=train, resampled=cfg.resampled, seed=derive_seed(seed, epoch, _SHARD_ORDER)),
        functools.partial(take_share, index=rank, total=world_size),
        take_worker_share,
        read_shards,
    ]
    if train and cfg.shuffle_buffer > 1:
        stages.append(SeededShuffle(cfg.shuffle_buffer, seed, epoch, rank))
    stages += [
        DecodeAndTransform(transform, seed, epoch, rank),
        BatchGoodSamples(batch_size, keep_partial=not train, image_size=cfg.image_size),
    ]
    return ImageLoader(wds.DataPipeline(*stages), shards=shards, batch_size=batch_size,
                       num_workers=cfg.num_workers, endless=train, pin_memory=pin_memory,
                       skip_batches=skip_batches)
