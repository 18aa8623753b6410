"""Random access into a local webdataset shard: an index of its samples, then reads by number.

Streaming a tar (what webdataset does) can only reach sample j by reading the j before it. The
training stream reads each shard through its index instead, so that a resumed run starts at any
sample of any shard at once, and a shard's samples can be read in a shuffled order. Indexing
reads only the tar headers: Python's tarfile seeks over each member's data in a regular file.

Samples follow webdataset's conventions exactly (webdataset.tariterators): consecutive members
sharing the part of their name before the first dot of the basename form one sample, keyed by it,
with the lower-cased rest as the field name; `__x__` metadata members and non-files are left out.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections import OrderedDict
from dataclasses import dataclass, field

from webdataset.tariterators import base_plus_ext

_META_MEMBER = re.compile(r"__[^/]*__($|/)")


@dataclass(frozen=True)
class Member:
    field: str  # "jpg", "json", ...
    offset: int  # of the data in the file
    size: int


@dataclass
class ShardIndex:
    path: str
    keys: list[str] = field(default_factory=list)
    members: list[list[Member]] = field(default_factory=list)  # per sample, in tar order
    damage: str | None = None  # why the shard could not be read to its end; None when whole

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, number: int, handle) -> dict:
        """Sample `number` as webdataset gives it: {"__key__", "__url__", field: bytes...}."""
        sample = {"__key__": self.keys[number], "__url__": self.path}
        for member in self.members[number]:
            handle.seek(member.offset)
            data = handle.read(member.size)
            if len(data) != member.size:  # the file shrank since it was indexed
                raise OSError(f"{self.path} ends inside {self.keys[number]}.{member.field}")
            sample[member.field] = data
        return sample


def _ends_properly(path: str, size: int) -> bool:
    """Whether the tar ends with its end-of-archive marker (two zero blocks, then padding): a file
    cut at a 512-byte boundary otherwise looks like a normal end, losing its tail silently."""
    if size % 512 or size < 1024:
        return False
    with open(path, "rb") as handle:
        handle.seek(size - 1024)
        return not any(handle.read(1024))


# Indexes this process made, by file identity. Training passes over the same shards epoch after
# epoch, and reading a 1000-sample shard's headers costs about 0.1 s of CPU (10 s of the demo's
# toy-CLIP stage, which reads its 20 shards five times over); a rewritten file has a new identity.
_KNOWN: OrderedDict[tuple, ShardIndex] = OrderedDict()
_KNOWN_MAX = 512  # indexes of 1000-sample shards take about 0.3 MB each


def index_shard(path: str) -> ShardIndex:
    """Index a local tar shard (remembered while the file is unchanged: device, inode, size and
    modification time). A damaged one keeps the samples before the damage and says what is wrong
    in `damage`; only a missing or unreadable file raises (OSError). Callers must not change it."""
    stat = os.stat(path)
    identity = (path, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    index = _KNOWN.get(identity)
    if index is None:
        index = _index(path, stat.st_size)
        _KNOWN[identity] = index
        if len(_KNOWN) > _KNOWN_MAX:
            _KNOWN.popitem(last=False)
    else:
        _KNOWN.move_to_end(identity)
    return index


def _index(path: str, size: int) -> ShardIndex:
    index = ShardIndex(path)
    last_key = None
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if not info.isreg() or _META_MEMBER.match(info.name):
                    continue
                if info.offset_data + info.size > size:
                    raise tarfile.ReadError(f"member {info.name} runs past the end of the file")
                key, suffix = base_plus_ext(info.name)
                if key is None:
                    continue
                if key != last_key:
                    index.keys.append(key)
                    index.members.append([])
                    last_key = key
                index.members[-1].append(Member(suffix.lower(), info.offset_data, info.size))
    except tarfile.TarError as err:
        where = f"after key {index.keys[-1]}" if index.keys else "before the first sample"
        index.damage = f"unreadable shard ({where}): {err}"
        if index.keys:  # the sample being read when the damage came may have lost members
            index.keys.pop()
            index.members.pop()
        return index
    if index.keys and not _ends_properly(path, size):
        index.damage = (f"shard is truncated (no end-of-archive marker after key {index.keys[-1]}); "
                        "samples after it are missing")  # fmt: skip
    return index
