"""Writing an imported model as a clipgen condition-transformer run directory (clipgen/run_dir.py).

The directory is what `train_gpt.py` exports (`model/`, `condition.yaml`, `gap.json`,
`sampling.yaml`, a text-token run's `caption-vocab.txt`) plus the VQGAN in `vqgan/`, which
condition.yaml names, and `imported.json`, where the weights came from. It is assembled in a
temporary directory beside `out` and renamed into place at the end, so a failed import leaves
nothing at `out`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from clipgen.config import save_config
from clipgen.encoders.gap import GapBridge, GapConfig
from clipgen.models.gpt import ConditionTransformer, save_gpt
from clipgen.models.vqgan import VQGAN
from clipgen.run_dir import CONDITION_NAME, MODEL_DIR_NAME, ConditionConfig
from clipgen.sampling import SamplingSettings, write_run_sampling

VQGAN_DIR_NAME = "vqgan"
IMPORTED_NAME = "imported.json"


def check_out_dir(out: str | Path) -> Path:
    """`out` if nothing is there yet (an empty directory is fine): an import never overwrites."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} already exists and is not empty: choose a new directory")
    return out


def write_imported_run(
    out: str | Path,
    gpt: ConditionTransformer,
    vqgan: VQGAN,
    condition: ConditionConfig,
    sampling: SamplingSettings,
    provenance: dict,
    files: dict[str, bytes | Callable[[Path], None]] | None = None,
) -> Path:
    """Write the run to `out` (which must not exist yet, or be empty) and return it. `files` are
    further files by name (a caption vocab, entity knowledge): their bytes, or a function that
    writes the file at the path it is given."""
    out = check_out_dir(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".import", dir=out.parent))
    try:
        save_gpt(gpt, tmp / MODEL_DIR_NAME)
        vqgan.save_pretrained(tmp / VQGAN_DIR_NAME)
        # an imported model was never trained with a bridge: text embeddings go in as they are
        GapBridge(GapConfig(bridge="none")).save(tmp)
        # condition.yaml names the VQGAN inside the run (read_condition resolves it there), so the
        # run still finds it after it is moved or copied
        save_config(dataclasses.replace(condition, vqgan=VQGAN_DIR_NAME), tmp / CONDITION_NAME)
        write_run_sampling(tmp, sampling)
        for name, data in (files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            if callable(data):
                data(tmp / name)
            else:
                (tmp / name).write_bytes(data)
        (tmp / IMPORTED_NAME).write_text(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if out.is_dir():
            out.rmdir()  # empty (checked): the rename needs the name free
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
