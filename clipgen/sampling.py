"""How a run is sampled: the settings, where a run directory keeps its own, and per-row seeds.

A run directory carries `sampling.yaml`, the settings it is best sampled with (the ones its
evaluation used; train_gpt.py writes those of its sample grids, the demo those it judged with).
`sample.py`, the pipeline and `clipgen serve` start from them unless told otherwise.

Every image draws its random numbers from its own stream, seeded by (request seed, row): row k of
a request with seed S gets the same uniforms whether it is sampled alone or in a batch with other
requests, so an image depends only on its prompt, seed and settings.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from dataclasses import dataclass
from pathlib import Path

import torch

from clipgen.config import ConfigError, FieldValueError, check_fields, load_config, save_config

SAMPLING_NAME = "sampling.yaml"
MAX_SEED = 2**63 - 1  # what torch.Generator.manual_seed takes
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0


@dataclass(frozen=True)
class SamplingSettings:
    guidance_scale: float = 2.0  # classifier-free guidance; 1 turns it off
    top_k: int = 0  # keep the k most likely tokens; 0 keeps all
    top_p: float = 1.0  # keep the smallest set whose probability reaches p; 1 keeps all
    temperature: float = 1.0  # 0 draws the most likely token (greedy)
    candidates: int = 0  # draw this many images per prompt and keep the ones CLIP ranks best; 0: no re-ranking

    def __post_init__(self):
        check_fields(self, [
            ("guidance_scale", math.isfinite(self.guidance_scale) and self.guidance_scale >= 0, "a finite number ≥ 0"),
            ("top_k", self.top_k >= 0, "≥ 0 (0 keeps every token)"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            # below 0.01 the scaled float32 logits overflow; 0 is the greedy pick itself
            ("temperature", self.temperature == 0 or MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE,
             f"0 (greedy) or in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE:g}]"),
            ("candidates", self.candidates >= 0, "≥ 0 (0: no re-ranking)"),
        ])  # fmt: skip

    def replace(self, **changes) -> "SamplingSettings":
        """These settings with every change that is not None applied."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def sampler_kwargs(self) -> dict:
        """What `ConditionTransformer.sample` takes."""
        return dict(guidance_scale=self.guidance_scale, top_k=self.top_k, top_p=self.top_p, temperature=self.temperature)


def check_sampling_flags(**flags) -> None:
    """Refuse bad command-line sampling settings by their flags' names (--top-p, not top_p) before
    any run is loaded; a flag left None is not checked (the run's own value stands)."""
    try:
        SamplingSettings().replace(**flags)
    except FieldValueError as err:
        raise ValueError("; ".join(f"--{name.replace('_', '-')} {problem}" for name, problem in err.problems)) from None


def read_run_sampling(run_dir: str | Path) -> SamplingSettings:
    """The run's own settings, or the defaults when it has none (runs made before this file)."""
    path = Path(run_dir) / SAMPLING_NAME
    if not path.is_file():
        return SamplingSettings()
    try:
        return load_config(SamplingSettings, path)
    except ValueError as err:  # ConfigError or a value out of range
        raise ConfigError(f"{path}: {err}") from None


def write_run_sampling(run_dir: str | Path, settings: SamplingSettings) -> Path:
    from clipgen.engine.atomic import atomic_write

    path = Path(run_dir) / SAMPLING_NAME
    with atomic_write(path) as tmp:
        save_config(settings, tmp)
    return path


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    return seed


def fresh_seed() -> int:
    """A seed for a request that named none; returned to the caller so the images can be redrawn."""
    return secrets.randbits(32)


def row_seed(seed: int, row: int) -> int:
    """The seed of row `row`'s own stream in a request seeded `seed`: 63 bits hashed from
    (seed, row) by numpy's SeedSequence. Generators clipgen did not train (`clipgen compare
    --diffusers`) seed their images with it too, so image k of prompt i has one seed everywhere."""
    import numpy as np

    check_seed(seed)
    words = list(divmod(seed, 2**32)[::-1])  # SeedSequence mixes 32-bit words: low, high
    return int(np.random.SeedSequence([*words, row]).generate_state(1, np.uint64)[0]) >> 1


def row_uniforms(seed: int, rows: int, num_tokens: int) -> torch.Tensor:
    """[rows, num_tokens] float64 uniforms in [0, 1): row r from its own generator, seeded with
    `row_seed(seed, r)`, drawn on the CPU so a CPU and a GPU run of the same request draw the same
    numbers."""
    out = torch.empty(rows, num_tokens, dtype=torch.float64)
    for row in range(rows):
        out[row] = torch.rand(num_tokens, dtype=torch.float64, generator=torch.Generator().manual_seed(row_seed(seed, row)))
    return out
