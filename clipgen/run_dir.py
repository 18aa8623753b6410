"""The condition-transformer run directory: what `train_gpt.py` writes and every reader relies on.

A run directory holds
- `model/`: the transformer (`clipgen.models.gpt.save_gpt` / `load_gpt`);
- `condition.yaml`: a `ConditionConfig`, what the model reads (image or caption embeddings, or
  caption tokens) and which VQGAN and CLIP go with it;
- `gap.json`: the modality-gap bridge (`clipgen.encoders.gap.GapBridge`);
- `sampling.yaml`: the settings it is best sampled with (`clipgen.sampling`);
- `caption-vocab.txt`: a text-token run's own copy of its vocab file;
- `knowledge/`: an imported ARTIST run's entity list and vectors (clipgen/encoders/entity_lexicon.py).

The contract lives here, below the trainer and below every reader (the pipeline, `clipgen compare`,
`clipgen serve`, the demo, and the importers of other projects' released models), so that reading
a run never means importing the code that trains one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from clipgen.config import load_config
from clipgen.encoders.gap import GapConfig

MODEL_DIR_NAME = "model"
CONDITION_NAME = "condition.yaml"
CAPTION_VOCAB_NAME = "caption-vocab.txt"  # the text-token run's own copy of its vocab file
ENTITY_IDS_NAME = "knowledge/entity2id.txt"  # ARTIST's entity list, as it ships it
ENTITY_VECTORS_NAME = "knowledge/entity2vec.safetensors"  # its entity vectors, under "entity2vec"


@dataclass
class ConditionConfig:
    source: Literal["image", "caption", "caption-tokens"] = "image"
    caption_vocab: str = ""  # caption-tokens: a BERT-style vocab.txt (e.g. bert-base-chinese's)
    cond_dropout: float = 0.1  # share of images trained with the null prefix (CFG)
    gap: GapConfig = field(default_factory=GapConfig)
    clip: str = ""  # KIND:PATH[;KEY=VALUE...] of the CLIP the tokens were extracted with (prompts, C3 text mean)
    # the VQGAN run or model dir (to draw the sample grids; recorded for sampling); relative: inside
    # the run directory, as an imported run names its own copy so that it can be moved
    vqgan: str = ""


def is_gpt_run_dir(path: str | Path) -> bool:
    """Whether `path` holds a finished condition-transformer run (its condition.yaml and model/)."""
    path = Path(path)
    return (path / CONDITION_NAME).is_file() and (path / MODEL_DIR_NAME).is_dir()


def check_guidance(condition: ConditionConfig, guidance_scale: float, where: str) -> None:
    """Refuse classifier-free guidance for a run that never trained its null condition
    (cond_dropout 0, as every imported model: neither released project trained one): guiding
    against an untrained prefix draws from noise, not from "no condition"."""
    if condition.cond_dropout == 0 and guidance_scale != 1:
        raise ValueError(f"{where} never trained a null condition ({CONDITION_NAME}: cond_dropout 0), so it cannot be "
                         f"sampled with classifier-free guidance: the guidance scale must be 1, got {guidance_scale}")


def read_condition(run_dir: str | Path) -> ConditionConfig:
    """The run's condition.yaml, its `vqgan` resolved (`vqgan_path`); a directory without one is
    refused by name."""
    path = Path(run_dir) / CONDITION_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a condition-transformer run directory (no {CONDITION_NAME})")
    condition = load_config(ConditionConfig, path)
    condition.vqgan = vqgan_path(run_dir, condition.vqgan)
    return condition


def vqgan_path(run_dir: str | Path, named: str) -> str:
    """condition.vqgan as a path to open: a relative one inside the run directory where it is
    there (an imported run's `vqgan`); else as written (absolute, or, for a run trained with a
    relative condition.vqgan, relative to where it was trained from, as before)."""
    if named and not Path(named).is_absolute() and (Path(run_dir) / named).exists():
        return str(Path(run_dir) / named)
    return named
