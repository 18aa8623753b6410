"""The runs a server answers with: run directories found among the paths given, by name.

`clipgen serve runs/demo/*/` passes every directory the demo wrote, the corpus and the VQGAN
among them: paths that exist but are not condition-transformer runs are skipped and said so,
a path that does not exist is an error, and so is a name two runs would share.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from clipgen.run_dir import is_gpt_run_dir

log = logging.getLogger("clipgen.serve")


def find_runs(paths: Sequence[str | Path]) -> dict[str, Path]:
    """Run name (the directory's base name) -> directory, in the order given."""
    runs: dict[str, Path] = {}
    skipped = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(f"{given}: no such run directory")
        if not is_gpt_run_dir(path):
            skipped.append(str(given))
            continue
        name = path.resolve().name
        if name in runs:
            raise ValueError(f"two runs are named {name!r} ({runs[name]} and {path}): serve them from directories with distinct names")
        runs[name] = path
    if skipped:
        log.warning("skipping %s: not condition-transformer runs (no condition.yaml and model/)", ", ".join(skipped))
    if not runs:
        raise ValueError(f"none of {', '.join(map(str, paths))} is a condition-transformer run directory (condition.yaml and model/)")
    return runs


def load_pipelines(runs: dict[str, Path], device: str = "auto") -> dict:
    from clipgen.pipeline import ClipGenPipeline

    pipelines = {}
    for name, path in runs.items():
        pipelines[name] = ClipGenPipeline.from_pretrained(path, device=device)
        log.info("loaded %s from %s (%s)", name, path, pipelines[name].sampling)
    return pipelines
