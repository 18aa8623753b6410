"""The data side every stage trained on image shards shares: a resumable training stream."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from clipgen.data.loader import ImageLoader, make_resumed_train_loader


class TrainsOnImageShards:
    """`train_batches` and `data_position` (the trainer's Task protocol) for a task whose config
    has `data` (ImageDataConfig) and `run`, and which keeps its DistInfo as `info`."""

    train_loader: ImageLoader

    def train_batches(self, batches_done: int, position: torch.Tensor | None) -> Iterator[dict[str, Any]]:
        self.train_loader = make_resumed_train_loader(
            self.cfg.data, batch_size=self.cfg.run.batch_size, seed=self.cfg.run.seed, rank=self.info.rank,
            world_size=self.info.world_size, batches_done=batches_done, position=position,
        )  # fmt: skip
        return iter(self.train_loader)

    def data_position(self) -> torch.Tensor:
        return self.train_loader.position.to_tensor()
