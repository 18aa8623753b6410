"""Prompts, and optionally reference images, for a comparison.

A `.tsv` file is read as an EasyNLP/MUGE test set (`idx \t text \t imgbase64`): its texts are the
prompts and its images the reference set. Any other file holds one prompt per line.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image

from clipgen.data.decode import BadImageError, decode_rgb

from clipgen.errors import read_text_file

log = logging.getLogger("clipgen.compare")


def read_prompts(path: str | Path) -> tuple[list[str], list[Image.Image]]:
    """(prompts, reference images); the second list is empty for a plain text file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prompts file not found: {path}")
    if path.suffix.lower() == ".tsv":
        prompts, references = _read_tsv(path)
    else:
        prompts = [line.strip() for line in read_text_file(path, "--prompts").splitlines() if line.strip()]
        references = []
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts, references


def _read_tsv(path: Path) -> tuple[list[str], list[Image.Image]]:
    from clipgen.data.sources import SourceFailure, iter_tsv

    prompts, references = [], []
    for item in iter_tsv(path):
        if isinstance(item, SourceFailure):
            if item.caption and item.caption.strip():  # the text is fine: only the reference is lost
                log.warning("%s: reference image unreadable (%s)", item.origin, item.reason)
                prompts.append(item.caption.strip())
            else:
                log.warning("%s: skipped (%s)", item.origin, item.reason)
            continue
        caption = item.meta.get("caption", "").strip()
        if not caption:
            log.warning("%s: skipped (no text)", item.origin)
            continue
        prompts.append(caption)
        try:
            references.append(decode_rgb(item.data))
        except BadImageError as err:  # the prompt stays; only its reference is lost
            log.warning("%s: reference image unreadable (%s)", item.origin, err)
    return prompts, references
