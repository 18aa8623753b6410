"""The shard index is read once per file version: epochs over the same shards reuse it, and a
rewritten shard is read again."""

from __future__ import annotations

import os

from clipgen.data.shapes_shards import make_shapes
from clipgen.data import shard_index
from clipgen.data.shard_index import index_shard


def test_an_unchanged_shard_is_indexed_once_and_a_rewritten_one_again(tmp_path, monkeypatch):
    make_shapes(tmp_path / "shapes", 20, shard_size=10)
    path = str(tmp_path / "shapes" / "shard-000000.tar")
    reads = []
    monkeypatch.setattr(shard_index, "_index", lambda p, size, read=shard_index._index: reads.append(p) or read(p, size))
    first = index_shard(path)
    assert index_shard(path) is first and len(reads) == 1 and len(first) == 10

    data = open(path, "rb").read()
    cut = len(data) // 2 // 512 * 512 + 100  # inside a member: a damaged shard
    with open(path, "wb") as handle:
        handle.write(data[:cut])
    os.utime(path, ns=(1, 1))  # a different modification time even on coarse-clock file systems
    again = index_shard(path)
    assert len(reads) == 2 and again is not first
    assert 0 < len(again) < 10 and again.damage
