import numpy as np

from clipgen.data.token_dataset import TokenData
from clipgen.data.tokens import write_token_shard


def _write(path, value: int) -> None:
    samples = [{"key": f"{i}", "codes": np.full((2, 2), value, np.int16), "clip": np.ones(4, np.float32), "meta": {}}
               for i in range(3)]  # fmt: skip
    write_token_shard(path, samples)


def test_unchanged_shards_are_read_once_and_rewritten_ones_again(tmp_path):
    shard = tmp_path / "shard-000000.tar"
    _write(shard, 1)
    first = TokenData.load(str(tmp_path))
    assert TokenData.load(str(tmp_path)) is first  # the demo's five generators share one read
    _write(shard, 2)  # the same size, possibly the same mtime: the atomic write's new inode tells
    again = TokenData.load(str(tmp_path))
    assert again is not first and int(again.codes[0, 0]) == 2 and int(first.codes[0, 0]) == 1
