"""A local diffusers text-to-image pipeline as a generator in `clipgen compare`.

`--diffusers NAME=DIR[;steps=N;guidance=G]`: DIR is what `save_pretrained` writes (model_index.json
beside one folder per component), e.g. Taiyi-Stable-Diffusion-1B-Chinese-v0.1 (a Stable Diffusion
pipeline whose text encoder is a Chinese BERT). It is loaded with `local_files_only=True`: a
comparison never downloads. Image k of prompt j in a batch starts from the noise of its own
`torch.Generator`, seeded with `row_seed(batch seed, j · num_images + k)` (clipgen/sampling.py), the
stream clipgen's own sampler gives that image; the generators live on the CPU, so a CPU and a GPU
run start from the same noise. diffusers is an optional extra: `pip install 'clipgen[diffusers]'`.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from clipgen.comparison.generators import absolute_path, split_name

MODEL_INDEX_NAME = "model_index.json"
OPTION_TYPES = {"steps": int, "guidance": float}  # what `;KEY=VALUE` after the directory may set


@dataclass(frozen=True)
class DiffusersSource:
    name: str
    directory: Path
    steps: int = 50  # denoising steps (diffusers' default)
    guidance: float = 7.5  # classifier-free guidance scale (diffusers' default for Stable Diffusion)

    @classmethod
    def parse(cls, given: str) -> "DiffusersSource":
        """NAME=DIR[;steps=N;guidance=G] as the command line writes it."""
        name, rest = split_name(given, "--diffusers")
        directory, *options = rest.split(";")
        values: dict[str, int | float] = {}
        for option in filter(str.strip, options):
            key, eq, value = (part.strip() for part in option.partition("="))
            if not eq or key not in OPTION_TYPES:
                raise ValueError(f"--diffusers {given}: unknown option {option.strip()!r} (it takes steps=N and guidance=G)")
            try:
                values[key] = OPTION_TYPES[key](value)
            except ValueError:
                what = "an integer" if OPTION_TYPES[key] is int else "a number"
                raise ValueError(f"--diffusers {given}: {key} takes {what}, got {value!r}") from None
        source = cls(name, Path(directory.strip()), **values)
        if source.steps < 1 or not (math.isfinite(source.guidance) and source.guidance >= 0):
            raise ValueError(f"--diffusers {given}: steps must be ≥ 1 and guidance a finite number ≥ 0")
        return source

    def describe(self) -> str:
        return f"diffusers pipeline {self.directory}, {self.steps} steps, guidance {self.guidance}, clipgen's seeds"

    def flags(self) -> list[str]:
        return ["--diffusers", f"{self.name}={absolute_path(self.directory)};steps={self.steps};guidance={self.guidance}"]

    def check(self, num_prompts: int, num_images: int) -> None:
        if importlib.util.find_spec("diffusers") is None:
            raise ValueError(f"--diffusers {self.name}: diffusers is not installed (pip install 'clipgen[diffusers]')")
        if not (self.directory / MODEL_INDEX_NAME).is_file():
            raise FileNotFoundError(f"--diffusers {self.name}={self.directory}: no {MODEL_INDEX_NAME} there; name a "
                                    "directory a diffusers pipeline was saved to (save_pretrained)")  # fmt: skip

    def open(self, device: torch.device) -> "DiffusersGenerator":
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(self.directory, local_files_only=True)
        except (OSError, ValueError, TypeError) as err:  # a component missing or unreadable
            raise ValueError(f"--diffusers {self.name}={self.directory}: cannot load the pipeline: {err}") from None
        return DiffusersGenerator(pipe.to(device), self)


class DiffusersGenerator:
    def __init__(self, pipe, source: DiffusersSource):
        self.pipe, self.source = pipe, source
        pipe.set_progress_bar_config(disable=True)
        unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        sample_size = getattr(getattr(unet, "config", None), "sample_size", None) or 64
        self.resolution = int(sample_size) * int(getattr(pipe, "vae_scale_factor", 8))

    @torch.no_grad()
    def draw(self, prompts: Sequence[str], start: int, num_images: int, seed: int) -> list[list[Image.Image]]:
        from clipgen.sampling import row_seed

        rows = len(prompts) * num_images
        generators = [torch.Generator().manual_seed(row_seed(seed, row)) for row in range(rows)]
        images = self.pipe(
            prompt=list(prompts), num_images_per_prompt=num_images, num_inference_steps=self.source.steps,
            guidance_scale=self.source.guidance, generator=generators, output_type="pil",
        ).images  # fmt: skip
        # diffusers repeats each prompt num_images times in a row: prompt-major, as the rows are
        return [list(images[j * num_images : (j + 1) * num_images]) for j in range(len(prompts))]
