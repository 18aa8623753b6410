"""ARTIST's entity knowledge for prompts: which known entities a caption mentions, and where.

ARTIST (EasyNLP's `pai-artist-knowl-*`) ships an entity list, `entity2id.txt` (a count on the
first line, then `word<TAB>id` lines; CN-DBpedia words), and their vectors, `entity2vec.pt`
([N, 100]). Its preprocessing matches each caption's tokens against the words longer than one
character (every match, overlapping ones included, ordered by start then end), and its predictor
fills an [entities=10, 32] matrix: row i holds the i-th match's id over the positions it covers,
0 elsewhere (entity 0 is a real entity and the filler at once), positions past 32 cut off. The
model reads the vectors of those ids (models/knowledge.py).

Tokens here are the run's own caption tokenizer's; ARTIST's preprocessing used
hfl/chinese-roberta-wwm-ext's BertTokenizer, which splits Chinese text into the same characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from clipgen.errors import read_text_file

ENTITY_SLOTS = 10  # the predictor's entity_num: only the first 10 matches are used


def read_entity2id(path: str | Path, what: str = "--entity2id") -> dict[str, int]:
    """Word -> id, as ARTIST reads the file: the first line (a count) skipped, a repeated word's
    last id kept."""
    lines = read_text_file(path, what).splitlines()[1:]
    words = {}
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        fields = line.strip().split("\t")  # further columns are ignored, as ARTIST's split('\t')[1] does
        if len(fields) < 2 or not fields[1].strip().isdigit():
            raise ValueError(f"{what} {path} line {number} is not 'word<TAB>id': {line[:40]!r}")
        words[fields[0]] = int(fields[1])
    if not words:
        raise ValueError(f"{what} {path} lists no entities")
    return words


class EntityLexicon:
    def __init__(self, words: dict[str, int], vectors: torch.Tensor, length: int):
        if vectors.dim() != 2:
            raise ValueError(f"entity vectors must be [entities, dim], got {list(vectors.shape)}")
        largest = max(words.values())
        if largest >= len(vectors):
            raise ValueError(f"entity id {largest} has no vector: there are {len(vectors)}")
        self.vectors, self.length = vectors.float(), length
        # the word list as read, looked up by span: a million-word list costs no further structure
        # at every pipeline load (a per-character trie did)
        self.words, self.longest = words, max(map(len, words))

    def matches(self, tokens: Sequence[str]) -> list[tuple[int, int, int]]:
        """(first, last token position, id) of every entity word among the tokens, in order of start
        then end. Words are spans of two or more single-character tokens, as ARTIST matches them
        (it drops one-character words, and a multi-character token such as "red" never matches)."""
        found = []
        for start in range(len(tokens)):
            span = ""
            for end in range(start, min(len(tokens), start + self.longest)):
                if len(tokens[end]) != 1:
                    break
                span += tokens[end]
                if end > start and span in self.words:
                    found.append((start, end, self.words[span]))
        return found

    def matrix(self, tokens: Sequence[str]) -> torch.Tensor:
        """[ENTITY_SLOTS, length] entity ids over the caption positions (0: no entity)."""
        ids = torch.zeros(ENTITY_SLOTS, self.length, dtype=torch.long)
        for slot, (start, end, entity) in enumerate(self.matches(tokens)[:ENTITY_SLOTS]):
            ids[slot, start : end + 1] = entity
        return ids

    @classmethod
    def from_files(cls, entity_ids: str | Path, entity_vectors: str | Path, length: int) -> "EntityLexicon":
        """The lexicon an imported ARTIST run keeps: its entity list and its safetensors vectors
        (under "entity2vec"). The caller names the files (the run layout is clipgen/run_dir.py's,
        which imports encoders/, so encoders/ does not import it)."""
        from safetensors.torch import load_file

        vectors = Path(entity_vectors)
        if not vectors.is_file():
            raise FileNotFoundError(f"{vectors} not found: the model reads entity knowledge (ARTIST) and needs it")
        return cls(read_entity2id(entity_ids, "entity list"), load_file(str(vectors))["entity2vec"], length)

    def knowledge(self, token_lists: Sequence[Sequence[str]]) -> torch.Tensor:
        """[B, ENTITY_SLOTS, length, dim] entity vectors for the captions' (uncut) tokens."""
        return self.vectors[torch.stack([self.matrix(tokens) for tokens in token_lists])]
