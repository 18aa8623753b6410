"""Caption token ids for the text-token baseline (EasyNLP's text2image).

EasyNLP puts a caption's BERT-style token ids (bert-base-chinese's vocab.txt: one Chinese character
per token) and the image codes in one sequence, the text ids shifted past the codebook. This is the
tokenizer half: transformers' BertTokenizer from a local vocab file, every caption cut or padded to
a fixed length, so the text part of the sequence has static shape. `write_char_vocab` makes such a
vocab file for a corpus that has none (the shapes-zh demo).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch

from clipgen.encoders.base import warn_prompt_cut

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class CaptionTokenizer:
    def __init__(self, vocab_file: str | Path, length: int):
        from transformers import BertTokenizer

        vocab_file = Path(vocab_file)
        if not vocab_file.is_file():
            raise FileNotFoundError(f"caption vocab file not found: {vocab_file} (a BERT-style vocab.txt, one token per line)")
        if length < 1:
            raise ValueError(f"caption length must be at least 1, got {length}")
        self.vocab_file, self.length = vocab_file, length
        self.tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True, tokenize_chinese_chars=True)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """[B, length] int64 ids: each caption's tokens, cut to `length` (with a warning), padded with [PAD]."""
        rows = []
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {i} is empty: a prompt needs at least one visible character")
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            if len(ids) > self.length:
                warn_prompt_cut(text, self.length)
                ids = ids[: self.length]
            rows.append(ids + [self.tokenizer.pad_token_id] * (self.length - len(ids)))
        return torch.tensor(rows, dtype=torch.long).view(len(rows), self.length)


def write_char_vocab(texts: Iterable[str], path: str | Path) -> Path:
    """A BERT vocab.txt holding the special tokens and every character of `texts`, in a stable order."""
    chars = sorted({char for text in texts for char in text.lower() if not char.isspace()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(SPECIAL_TOKENS + chars) + "\n", encoding="utf-8")
    return path
