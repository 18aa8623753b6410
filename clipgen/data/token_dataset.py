"""Token shards held in memory for condition-transformer training.

Tokens are small (a 16×16 grid of int16 codes and a float16 embedding per image: ~1.5 KB), so a
corpus of a million images fits in 1.5 GB and is read once. Batches are drawn with replacement
from a generator seeded by (seed, rank, step): every rank always has data, and a resumed run
draws exactly the batches the interrupted one would have, with nothing to skip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clipgen.data.loader import derive_seed, expand_shards
from clipgen.data.tokens import iter_token_shard


@dataclass
class TokenData:
    codes: torch.Tensor  # [N, h*w] int16/int32
    clip: torch.Tensor  # [N, D] float16
    meta: list[dict]

    @classmethod
    def load(cls, spec: str) -> "TokenData":
        codes, clip, meta = [], [], []
        for path in expand_shards(spec):
            for sample in iter_token_shard(path):
                codes.append(sample["codes"].reshape(-1))
                clip.append(sample["clip"])
                meta.append(sample["meta"])
        if not codes:
            raise ValueError(f"no token samples in {spec}")
        n_embed_fits_int16 = max(int(c.max()) for c in codes) < 2**15
        code_dtype = np.int16 if n_embed_fits_int16 else np.int32
        return cls(
            torch.from_numpy(np.stack(codes).astype(code_dtype)),
            torch.from_numpy(np.stack(clip).astype(np.float16)),
            meta,
        )

    def __len__(self) -> int:
        return len(self.codes)

    def batch(self, batch_size: int, seed: int, rank: int, step: int, micro: int = 0) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(derive_seed(seed, rank, step, micro))
        index = torch.randint(len(self), (batch_size,), generator=generator)
        return {"codes": self.codes[index].long(), "clip": self.clip[index].float(), "index": index}

    def batches_in_order(self, batch_size: int, rank: int = 0, world_size: int = 1):
        """Every sample once, this rank's share, in order (validation)."""
        indices = torch.arange(rank, len(self), world_size)
        for start in range(0, len(indices), batch_size):
            index = indices[start : start + batch_size]
            yield {"codes": self.codes[index].long(), "clip": self.clip[index].float(), "index": index}
