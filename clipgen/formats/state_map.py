"""Renaming another project's state dict into clipgen's names, with every source key accounted for.

The seed projects load their own checkpoints leniently (EasyNLP with `strict=False`), so a key
that is misnamed stays randomly initialised without a word. A converter here takes each source key
it knows exactly once (`take`, `copy`), drops what it drops on purpose (`drop`: a discriminator,
a mask buffer it has checked), and `finish` refuses whatever is left over, by name.
"""

from __future__ import annotations

import torch


def describe_keys(keys, limit: int = 8) -> str:
    """Up to `limit` keys, sorted, then how many there are in all."""
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


class StateMap:
    def __init__(self, state: dict[str, torch.Tensor], source: str):
        self.state, self.source = state, source
        self.out: dict[str, torch.Tensor] = {}
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.state

    def keys(self, prefix: str) -> list[str]:
        """The source keys under `prefix`, in the file's order."""
        return [k for k in self.state if k.startswith(prefix)]

    def take(self, key: str) -> torch.Tensor:
        if key not in self.state:
            raise ValueError(f"{self.source} lacks the key {key}")
        self.used.add(key)
        return self.state[key]

    def copy(self, src: str, dst: str) -> None:
        self.out[dst] = self.take(src)

    def copy_module(self, src: str, dst: str, parts=("weight", "bias")) -> None:
        """One module's parameters (`src.weight` -> `dst.weight`, ...); a missing one is an error that
        names it in the source's terms."""
        for part in parts:
            self.copy(f"{src}.{part}", f"{dst}.{part}")

    def copy_under(self, src_prefix: str, dst_prefix: str) -> None:
        """Every key under `src_prefix`, renamed to the same suffix under `dst_prefix`; none is an error."""
        keys = self.keys(src_prefix)
        if not keys:
            raise ValueError(f"{self.source} lacks the keys {src_prefix}*")
        for key in keys:
            self.copy(key, dst_prefix + key[len(src_prefix) :])

    def drop(self, prefix: str) -> None:
        """Leave out every key under `prefix` on purpose (training-only parts)."""
        self.used.update(self.keys(prefix))

    def finish(self) -> dict[str, torch.Tensor]:
        """The renamed state; a source key nothing took is an error that names it."""
        unknown = set(self.state) - self.used
        if unknown:
            raise ValueError(f"{self.source} has keys this converter does not know: {describe_keys(unknown)}")
        return self.out
