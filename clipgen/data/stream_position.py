"""Where one rank's training stream stands, so that a resumed run starts there without reading.

Each DataLoader worker reads its own share of the shards. A logical worker's place is the number
of shards it has finished in its share and how many samples of the current one it has consumed;
the rank's place adds which worker's batch the DataLoader hands out next (it takes them round
robin). That is everything a resumed stream needs: the shard draws before it are regenerated
from the seed (names only), the samples before it in its shard are not read, and every random
choice after it is a function of the position (see loader.py), so the same batches follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StreamPosition:
    shards_done: list[int] = field(default_factory=lambda: [0])  # per logical worker
    samples_done: list[int] = field(default_factory=lambda: [0])  # in that worker's current shard
    next_worker: int = 0  # the logical worker whose batch comes next

    @classmethod
    def start(cls, num_workers: int) -> StreamPosition:
        workers = max(1, num_workers)
        return cls([0] * workers, [0] * workers, 0)

    @property
    def num_workers(self) -> int:
        return len(self.shards_done)

    def advanced(self, worker: int, shards_done: int, samples_done: int) -> StreamPosition:
        """The position once `worker`'s batch that ends at (shards_done, samples_done) is consumed."""
        shards, samples = list(self.shards_done), list(self.samples_done)
        shards[worker], samples[worker] = shards_done, samples_done
        return StreamPosition(shards, samples, (worker + 1) % self.num_workers)

    def to_tensor(self) -> torch.Tensor:
        """int64 [workers + 1, 2]: (shards, samples) per worker, then (next worker, 0); a fixed
        shape, so positions of all ranks are gathered with one all-reduce."""
        rows = [list(pair) for pair in zip(self.shards_done, self.samples_done)] + [[self.next_worker, 0]]
        return torch.tensor(rows, dtype=torch.int64)

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor) -> StreamPosition:
        rows = tensor.tolist()
        if len(rows) < 2 or any(len(r) != 2 or min(r) < 0 for r in rows):
            raise ValueError(f"not a stream position: {rows}")
        position = cls([r[0] for r in rows[:-1]], [r[1] for r in rows[:-1]], rows[-1][0])
        if position.next_worker >= position.num_workers:
            raise ValueError(f"not a stream position: {rows}")
        return position
