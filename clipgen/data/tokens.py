"""Token shards: what `clipgen extract` writes and `train_gpt.py` reads.

One webdataset sample per image: `codes.npy` (the VQGAN indices [h, w], int16 when the codebook
fits, else int32), `clip.npy` (the L2-normalised CLIP image embedding [D], float16) and `json`
(the source sample's metadata, labels and caption included when present). One token shard is
written per image shard, under the same name, atomically, so an interrupted extraction resumes
by skipping the shards already there.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import webdataset as wds

from clipgen.engine.atomic import atomic_write



def codes_dtype(n_embed: int) -> np.dtype:
    return np.dtype(np.int16) if n_embed <= np.iinfo(np.int16).max + 1 else np.dtype(np.int32)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_token_shard(path: Path, samples: list[dict[str, Any]]) -> None:
    """samples: dicts with key, codes (int array), clip (float array), meta (dict)."""
    with atomic_write(path) as tmp:
        with wds.TarWriter(str(tmp), mtime=0) as writer:
            for sample in samples:
                writer.write({
                    "__key__": sample["key"],
                    "codes.npy": _npy(sample["codes"]),
                    "clip.npy": _npy(sample["clip"].astype(np.float16)),
                    "json": json.dumps(sample["meta"], ensure_ascii=False).encode("utf-8"),
                })  # fmt: skip


def iter_token_shard(path: str | Path) -> Iterator[dict[str, Any]]:
    """Samples of one token shard: key, codes (int64 [h, w]), clip (float32 [D]), meta."""
    for raw in wds.tarfile_samples([{"url": str(path)}]):
        yield {
            "key": raw["__key__"],
            "codes": np.load(io.BytesIO(raw["codes.npy"]), allow_pickle=False).astype(np.int64),
            "clip": np.load(io.BytesIO(raw["clip.npy"]), allow_pickle=False).astype(np.float32),
            "meta": json.loads(raw["json"]) if "json" in raw else {},
        }
