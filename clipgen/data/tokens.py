"""Token shards: what `clipgen extract` writes and `train_gpt.py` reads.

One webdataset sample per image: `codes.npy` (the VQGAN indices [h, w], int16 when the codebook
fits, else int32), `clip.npy` (the L2-normalised CLIP image embedding [D], float16), `text.npy`
when asked for and the sample has a caption (the same CLIP's text embedding of that caption, which
the caption-trained baseline is conditioned on) and `json` (the source sample's metadata, labels and
caption included when present). One token shard is
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

from clipgen.data.decode import IMAGE_EXTENSIONS
from clipgen.engine.atomic import atomic_write



def codes_dtype(n_embed: int) -> np.dtype:
    return np.dtype(np.int16) if n_embed <= np.iinfo(np.int16).max + 1 else np.dtype(np.int32)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_token_shard(path: Path, samples: list[dict[str, Any]]) -> None:
    """samples: dicts with key, codes (int array), clip (float array), meta (dict) and optionally
    text (float array)."""
    with atomic_write(path) as tmp:
        with wds.TarWriter(str(tmp), mtime=0) as writer:
            for sample in samples:
                record = {
                    "__key__": sample["key"],
                    "codes.npy": _npy(sample["codes"]),
                    "clip.npy": _npy(sample["clip"].astype(np.float16)),
                    "json": json.dumps(sample["meta"], ensure_ascii=False).encode("utf-8"),
                }  # fmt: skip
                if sample.get("text") is not None:
                    record["text.npy"] = _npy(sample["text"].astype(np.float16))
                writer.write(record)


def iter_token_shard(path: str | Path) -> Iterator[dict[str, Any]]:
    """Samples of one token shard: key, codes (int [h, w]), clip (float16 [D]), text (float16 [D]
    or None), meta; arrays keep the dtypes they were stored in."""
    for raw in wds.tarfile_samples([{"url": str(path)}]):
        if "codes.npy" not in raw:
            raise ValueError(_not_a_token_shard(path, raw))
        yield {
            "key": raw["__key__"],
            "codes": _load_npy(raw["codes.npy"]),
            "clip": _load_npy(raw["clip.npy"]),
            "text": _load_npy(raw["text.npy"]) if "text.npy" in raw else None,
            "meta": json.loads(raw["json"]) if "json" in raw else {},
        }


def _not_a_token_shard(path: str | Path, raw: dict[str, Any]) -> str:
    parts = sorted(k for k in raw if not k.startswith("__"))
    if any(part.lower() in IMAGE_EXTENSIONS for part in parts):
        return (f"{path} holds images ({', '.join(parts)}), not tokens: these look like image shards (from clipgen "
                "make-shapes or convert); run `clipgen extract` on them first and train on the token shards it writes")
    return (f"{path}: sample {raw['__key__']!r} has no codes.npy (it holds {', '.join(parts) or 'nothing'}), "
            "so it is not a token shard from `clipgen extract`")


def _load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
