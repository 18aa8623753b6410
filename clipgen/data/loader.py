"""Reading webdataset image shards for training and evaluation.

    loader = make_image_loader(cfg, batch_size=64, seed=0, rank=rank, world_size=world, epoch=epoch)
    for batch in loader:   # {"image": FloatTensor[B,3,S,S] in [-1,1], "key": [...], "meta": [...]}
        ...

The pipeline, in each DataLoader worker (or in the main process when num_workers == 0):

    shard names -> this rank's share -> this worker's share -> each shard's samples, by index
      -> decode + transform -> batches of good samples (+ in-band reports of bad ones)

- train: an endless stream. With `resampled` the shard names are drawn with replacement, otherwise
  they are shuffled pass after pass; either way ONE global sequence, seeded by (seed, epoch), is
  dealt round-robin to ranks and then to workers, so every rank always has data (no DDP rank waits
  on uneven shards) and every worker gets different shards. Each shard's samples are read in a
  shuffled order, and each sample's random crop/flip is drawn, from generators seeded by the
  sample's place in the stream: the whole stream is reproducible, and resumable from any place.
- resuming: `loader.position` says how far the batches handed out reach (per worker: shards
  finished, samples of the current shard consumed; and whose batch is next). A loader made with
  `start=` that position regenerates the shard names before it (names only), opens its current
  shard at the next sample through the shard's tar index (shard_index.py), and goes on with
  exactly the batches the interrupted run would have seen, in time that does not grow with the
  step count.
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
from clipgen.data.decoded_cache import DecodedImageCache
from clipgen.data.shard_index import index_shard
from clipgen.data.stream_position import StreamPosition
from clipgen.data.transforms import ImageTransform, to_signed_tensor

log = logging.getLogger("clipgen.data")

# Separate random streams derived from one seed, so that e.g. turning shuffling off does not
# change the crops.
_SHARD_ORDER, _SHUFFLE, _AUGMENT = 0, 1, 2
# A train stream where nothing decodes would otherwise spin forever without yielding a batch.
MAX_CONSECUTIVE_BAD_SAMPLES = 10_000


@dataclass
class ImageDataConfig:
    """Where the image shards are and how to turn them into training/eval batches.

    shards: a directory of .tar shards, a brace pattern "dir/shard-{000000..000009}.tar", a glob,
        or a comma-separated list of any of these.
    crop, flip: used in training only; evaluation always centre-crops and never flips.
    shuffle: training reads each shard's samples in a shuffled order (and the shards in a
        shuffled order always); a buffer shuffle across shards is not used, because a resumed run
        would have to refill it by reading what came before.
    resampled: training: draw shards with replacement -> an endless stream that never leaves a DDP
        rank waiting on uneven shards. False: shuffled passes over the shards, still endless.
    """

    shards: str = ""
    image_size: int = 32
    crop: Literal["center", "random"] = "random"
    flip: bool = True
    shuffle: bool = True
    num_workers: int = 0
    resampled: bool = True
    # > 0 (training readers only): keep decoded images in memory up to this many MB per reader
    # process, so a corpus that fits is decoded once rather than once an epoch; with a fixed
    # transform (centre crop, no flip) the transformed pixels are kept (data/decoded_cache.py)
    decoded_cache_mb: int = 0


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


# A sample's place in its rank's stream: (logical worker, shards that worker finished before this
# one, samples of this shard consumed once this one is). It seeds the sample's augmentation and
# travels with it, so the main process always knows how far each worker's stream was consumed.
Place = tuple[int, int, int]


class WorkerShards:
    """This worker's share of the rank's shard names, numbered, from where `start` says.

    Workers are numbered logically: DataLoader worker i plays logical worker (i + start.next_worker)
    mod W, so that a resumed stream's first batch comes from the worker whose turn it was. The
    shards before the start are skipped by name (drawing names is cheap), never opened."""

    def __init__(self, start: StreamPosition):
        self.start = start

    def __call__(self, shard_dicts: Iterator[dict]) -> Iterator[tuple[int, int, str]]:
        worker, num_workers = _worker()
        if num_workers != self.start.num_workers:
            raise ValueError(f"a stream position for {self.start.num_workers} workers given to {num_workers}")
        logical = (worker + self.start.next_worker) % num_workers
        first = self.start.shards_done[logical]
        mine = islice(take_share(shard_dicts, logical, num_workers), first, None)
        for number, shard in enumerate(mine, start=first):
            yield logical, number, shard["url"]


class ReadSamples:
    """Each shard's samples in its reading order (shuffled within the shard in training, seeded by
    the shard's place), resuming mid-shard where `start` says, as (place, raw sample) pairs.

    A shard that cannot be read to its end keeps the samples before the damage and is reported
    as a `BadSample` after them; an unreadable one is only reported. webdataset's `handler=`
    options do not fit: `reraise_exception` ends the run, `ignore_and_continue` hides the loss,
    `warn_and_continue` warns only inside the worker and sleeps 0.5 s per error."""

    def __init__(self, start: StreamPosition, *, shuffle: bool, seed: int, epoch: int, rank: int):
        self.start, self.shuffle, self.seed, self.epoch, self.rank = start, shuffle, seed, epoch, rank

    def __call__(self, shards: Iterator[tuple[int, int, str]]) -> Iterator[tuple[Place, dict | BadSample]]:
        for worker, number, url in shards:
            try:
                index = index_shard(url)
            except OSError as err:
                yield (worker, number + 1, 0), BadSample(url, None, f"unreadable shard: {err}")
                continue
            order = range(len(index))
            if self.shuffle:
                rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, number, _SHUFFLE])
                order = rng.permutation(len(index)).tolist()
            begin = self.start.samples_done[worker] if number == self.start.shards_done[worker] else 0
            if begin < len(index):
                with open(url, "rb") as handle:
                    for done in range(begin, len(index)):
                        try:
                            sample = index.read(order[done], handle)
                        except OSError as err:
                            sample = BadSample(url, index.keys[order[done]], f"unreadable: {err}")
                        yield (worker, number, done + 1), sample
            if index.damage:
                yield (worker, number + 1, 0), BadSample(url, None, index.damage)
            elif not len(index):
                # reported: an endless stream over empty shards would otherwise spin without a word
                yield (worker, number + 1, 0), BadSample(url, None, "shard holds no samples")


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
    """(place, raw sample) -> (place, {"image", "key", "meta"}), or a BadSample when the image
    cannot be decoded. The random crop and flip draw from a generator seeded by the sample's place
    in the stream, so they are the same however the stream was reached (from the start or resumed).

    Only decoding failures become BadSamples: an exception in the transform is a bug and is
    raised, so that a broken transform cannot silently turn every sample into a "bad" one."""

    def __init__(self, transform: ImageTransform, seed: int, epoch: int, rank: int, cache: DecodedImageCache | None = None):
        self.transform, self.seed, self.epoch, self.rank, self.cache = transform, seed, epoch, rank, cache

    def __call__(self, samples: Iterator[tuple[Place, dict | BadSample]]) -> Iterator[tuple[Place, dict | BadSample]]:
        for place, sample in samples:
            if isinstance(sample, BadSample):
                yield place, sample
                continue
            key, shard = sample.get("__key__"), sample.get("__url__", "?")
            data = _image_bytes(sample)
            if data is None:
                present = sorted(k for k in sample if not k.startswith("__"))
                yield place, BadSample(shard, key, f"no image in sample (has: {', '.join(present) or 'nothing'})")
                continue
            size = self.transform.size
            try:
                if self.cache is None:
                    pixels = self.transform.pixels(decode_rgb(data, min_side=size), self._rng(place))
                elif not self.transform.random:  # the same pixels every epoch: keep those
                    pixels = self.cache.get(shard, key, lambda: self.transform.pixels(decode_rgb(data, min_side=size)))
                else:  # keep the decoded image; crop and flip differ per epoch
                    pixels = self.transform.pixels(self.cache.get(shard, key, lambda: decode_rgb(data, min_side=size)), self._rng(place))
            except BadImageError as err:
                yield place, BadSample(shard, key, str(err))
                continue
            yield place, {"image": to_signed_tensor(pixels), "key": key, "meta": _parse_meta(sample)}

    def _rng(self, place: Place) -> np.random.Generator | None:
        return np.random.default_rng([self.seed, self.epoch, self.rank, *place, _AUGMENT]) if self.transform.random else None


def _collate(good: list[dict], bad: list[BadSample], image_size: int, place: Place) -> dict:
    # np.stack rather than torch.stack: same result, without torch's thread pool (see
    # transforms.to_signed_tensor for why that matters here).
    if good:
        images = torch.from_numpy(np.stack([s["image"].numpy() for s in good]))
    else:
        images = torch.empty(0, 3, image_size, image_size)
    return {"image": images, "key": [s["key"] for s in good], "meta": [s["meta"] for s in good], "bad": bad,
            "place": place}  # fmt: skip


class BatchGoodSamples:
    """Batches of `batch_size` good samples; BadSamples ride along in the batch's "bad" list, and
    the batch's "place" is that of the last sample it consumed.

    Counting only good samples keeps every batch full. Reports are flushed in an image-less batch
    when they pile up, so a run of bad samples is reported promptly and cannot grow without bound."""

    def __init__(self, batch_size: int, keep_partial: bool, image_size: int):
        self.batch_size, self.keep_partial, self.image_size = batch_size, keep_partial, image_size

    def __call__(self, samples: Iterator[tuple[Place, dict | BadSample]]) -> Iterator[dict]:
        good: list[dict] = []
        bad: list[BadSample] = []
        place = None
        for place, sample in samples:
            if isinstance(sample, BadSample):
                bad.append(sample)
                if len(bad) >= self.batch_size:
                    yield _collate([], bad, self.image_size, place)
                    bad = []
                continue
            good.append(sample)
            if len(good) == self.batch_size:
                yield _collate(good, bad, self.image_size, place)
                good, bad = [], []
        if good and not self.keep_partial:
            good = []  # training wants full batches; the remainder of a finished stream is dropped
        if good or bad:
            yield _collate(good, bad, self.image_size, place)


def _as_is(batch: Any) -> Any:
    # DataLoader's default conversion would walk the batch; it is already in its final form.
    return batch


# ---------------------------------------------------------------- the loader


class ImageLoader:
    """Iterable of image batches; see the module docstring. Iterating again replays the same
    stream (same seed, epoch, rank and start). `position` is how far the batches handed out so
    far reach: a loader made with `start=` that position continues with exactly the batches that
    would have followed, without reading any sample before them."""

    def __init__(self, pipeline: wds.DataPipeline, *, shards: list[str], batch_size: int,
                 num_workers: int, endless: bool, start: StreamPosition, pin_memory: bool = False):
        self.pipeline = pipeline
        self.endless = endless
        self.shards = shards
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.bad_samples = BadSampleLog()
        self.start = start
        self.position = start

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
        self.position = self.start
        consecutive_bad = 0
        for batch in loader:
            bad = batch.pop("bad")
            for item in bad:
                self._record(item)
            self.position = self.position.advanced(*batch.pop("place"))
            if not batch["key"]:
                consecutive_bad += len(bad)
                if self.endless and consecutive_bad > MAX_CONSECUTIVE_BAD_SAMPLES:
                    raise RuntimeError(
                        f"no decodable image in the last {consecutive_bad} samples of {len(self.shards)} shard(s) "
                        f"(last: {bad[-1].as_dict()}); the data is broken"
                    )
                continue
            consecutive_bad = 0
            yield batch


def make_image_loader(cfg: ImageDataConfig, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                      train: bool = True, epoch: int = 0, start: StreamPosition | None = None,
                      pin_memory: bool = False) -> ImageLoader:
    """Build the loader for one (seed, epoch, rank), from the stream's beginning or from `start`
    (a training position from `loader.position`); see the module docstring for the semantics."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
    if cfg.num_workers < 0:
        raise ValueError(f"num_workers must be non-negative, got {cfg.num_workers}")
    if cfg.decoded_cache_mb < 0:
        raise ValueError(f"decoded_cache_mb must be non-negative, got {cfg.decoded_cache_mb}")
    start = start or StreamPosition.start(cfg.num_workers)
    if start.num_workers != max(1, cfg.num_workers):
        raise ValueError(f"the stream position is for {start.num_workers} workers, data.num_workers is {cfg.num_workers}")
    shards = expand_shards(cfg.shards)
    if train:
        transform = ImageTransform(cfg.image_size, cfg.crop, cfg.flip)
    else:
        transform = ImageTransform(cfg.image_size, "center", False)
    pipeline = wds.DataPipeline(
        ShardNames(shards, train=train, resampled=cfg.resampled, seed=derive_seed(seed, epoch, _SHARD_ORDER)),
        functools.partial(take_share, index=rank, total=world_size),
        WorkerShards(start),
        ReadSamples(start, shuffle=train and cfg.shuffle, seed=seed, epoch=epoch, rank=rank),
        # a cache pays from the second epoch on: evaluation and extraction read each image once
        DecodeAndTransform(transform, seed, epoch, rank, DecodedImageCache(cfg.decoded_cache_mb) if cfg.decoded_cache_mb and train else None),
        BatchGoodSamples(batch_size, keep_partial=not train, image_size=cfg.image_size),
    )
    return ImageLoader(pipeline, shards=shards, batch_size=batch_size, num_workers=cfg.num_workers,
                       endless=train, start=start, pin_memory=pin_memory)


def make_resumed_train_loader(cfg: ImageDataConfig, *, batch_size: int, seed: int, rank: int, world_size: int,
                              batches_done: int, position: torch.Tensor | None) -> ImageLoader:
    """The training loader of a run that has consumed `batches_done` batches, continuing from the
    checkpoint's `position` (StreamPosition.to_tensor). Without a position that fits (an older
    checkpoint, another data.num_workers or world size), a fresh draw follows instead of a replay
    of batches already trained on, and the log says so."""
    start, epoch = None, 0
    if position is not None:
        start = StreamPosition.from_tensor(position)
        if start.num_workers != max(1, cfg.num_workers):
            start = None
    if start is None and batches_done > 0:
        log.warning("the checkpoint holds no data position for %d worker(s) on %d rank(s): the stream goes on from "
                    "a fresh draw (epoch %d), not where it stood", max(1, cfg.num_workers), world_size, batches_done)  # fmt: skip
        epoch = batches_done
    return make_image_loader(cfg, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, train=True,
                             epoch=epoch, start=start)  # fmt: skip
