"""Token shards held in memory for condition-transformer training.

Tokens are small (a 16×16 grid of int16 codes and a float16 embedding per image: ~1.5 KB), so a
corpus of a million images fits in 1.5 GB and is read once. Batches are drawn with replacement
from a generator seeded by (seed, rank, step): every rank always has data, and a resumed run
draws exactly the batches the interrupted one would have, with nothing to skip.

Loading the same unchanged shards again in one process returns the TokenData already read
(shared, and never modified by clipgen): the demo trains five generators on one set of tokens,
and reading 20000 samples out of their tar shards takes ~5 s each time.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from clipgen.data.loader import derive_seed, expand_shards
from clipgen.data.tokens import iter_token_shard

log = logging.getLogger("clipgen.data")

_RECENT_LOADS: OrderedDict[tuple, "TokenData"] = OrderedDict()
_RECENT_LOADS_KEPT = 2  # the demo's two splits; more would pin more corpora in memory


def _file_identity(stat: os.stat_result) -> tuple:
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


@dataclass
class TokenData:
    codes: torch.Tensor  # [N, h*w] int16/int32
    clip: torch.Tensor  # [N, D] float16: CLIP image embeddings
    meta: list[dict]
    text: torch.Tensor | None = None  # [N, D] float16: CLIP text embeddings of the captions, if extracted

    @classmethod
    def load(cls, spec: str) -> "TokenData":
        paths = expand_shards(spec)
        # extraction writes a shard atomically, so a rewritten one has a new inode (its size may
        # well be the same: fixed-shape arrays in a tar without timestamps)
        identity = tuple((os.path.realpath(p), *_file_identity(os.stat(p))) for p in paths)
        if identity in _RECENT_LOADS:
            _RECENT_LOADS.move_to_end(identity)
            return _RECENT_LOADS[identity]
        data = cls._read(spec, paths)
        _RECENT_LOADS[identity] = data
        while len(_RECENT_LOADS) > _RECENT_LOADS_KEPT:
            _RECENT_LOADS.popitem(last=False)
        return data

    @classmethod
    def _read(cls, spec: str, paths: list[str]) -> "TokenData":
        codes, clip, text, meta = [], [], [], []
        for path in paths:
            for sample in iter_token_shard(path):
                codes.append(sample["codes"].reshape(-1))
                clip.append(sample["clip"])
                text.append(sample["text"])
                meta.append(sample["meta"])
        if not codes:
            raise ValueError(f"no token samples in {spec}")
        code_dtype = np.int16 if max(int(c.max()) for c in codes) < 2**15 else np.int32
        with_text = [t is not None for t in text]
        if any(with_text) and not all(with_text):
            # still fine for the language-free model; the caption-trained one refuses text=None
            log.warning("%s: %d of %d samples have no caption embedding: caption embeddings are left out",
                        spec, with_text.count(False), len(text))  # fmt: skip
        return cls(
            torch.from_numpy(np.stack(codes).astype(code_dtype, copy=False)),
            torch.from_numpy(np.stack(clip).astype(np.float16, copy=False)),
            meta,
            torch.from_numpy(np.stack(text).astype(np.float16, copy=False)) if all(with_text) else None,
        )

    def captions(self) -> list[str]:
        missing = sum(1 for m in self.meta if not str(m.get("caption", "")).strip())
        if missing:
            raise ValueError(f"{missing} of {len(self.meta)} token samples have no caption in their metadata")
        return [m["caption"] for m in self.meta]

    def __len__(self) -> int:
        return len(self.codes)

    def _rows(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = {"codes": self.codes[index].long(), "clip": self.clip[index].float(), "index": index}
        if self.text is not None:
            rows["text"] = self.text[index].float()
        return rows

    def batch(self, batch_size: int, seed: int, rank: int, step: int, micro: int = 0) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(derive_seed(seed, rank, step, micro))
        return self._rows(torch.randint(len(self), (batch_size,), generator=generator))

    def batches_in_order(self, batch_size: int, rank: int = 0, world_size: int = 1):
        """Every sample once, this rank's share, in order (validation)."""
        indices = torch.arange(rank, len(self), world_size)
        for start in range(0, len(indices), batch_size):
            yield self._rows(indices[start : start + batch_size])
