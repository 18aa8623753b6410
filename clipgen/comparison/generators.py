"""The generators one comparison draws from, behind one interface.

- a clipgen run directory (`--runs DIR`): its pipeline, with the comparison's sampling settings;
- a folder of images another tool drew (`--images NAME=DIR`), in the layout sample.py writes;
- a local diffusers text-to-image pipeline (`--diffusers NAME=DIR[;...]`, diffusers_pipeline.py).

A source (what the command line named: typed, checked before anything is sampled) opens into a
generator, which is asked for one prompt batch at a time: the prompts at `start`, `start + 1`, ...
of the comparison, `num_images` each, with the batch's seed. Image k of the batch's prompt j is
row j · num_images + k of that seed, as in ClipGenPipeline, so every generator that takes seeds
draws image k of prompt i from the same stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import torch
from PIL import Image

from clipgen.run_dir import CONDITION_NAME, MODEL_DIR_NAME, check_guidance, is_gpt_run_dir, read_condition

SAMPLE_NAME = "{i:04d}_{k}.png"  # sample.py's and the comparison's: i the prompt's 0-based index, k the image
_NAME = re.compile(r"[\w.+-]+")  # a name becomes a directory of the output: no separators


class Generator(Protocol):
    resolution: int  # the side of the images it draws, for a comparison that has no other to follow

    def draw(self, prompts: Sequence[str], start: int, num_images: int, seed: int) -> list[list[Image.Image]]:
        """`num_images` images for each of `prompts`, the comparison's prompts from index `start`."""
        ...


class Source(Protocol):
    name: str
    directory: Path

    def describe(self) -> str:
        """What the report says the generator is."""
        ...

    def flags(self) -> list[str]:
        """The command-line flags that name this source again (absolute paths)."""
        ...

    def check(self, num_prompts: int, num_images: int) -> None:
        """Refuse what would fail later, before any generator is loaded or sampled."""
        ...

    def open(self, device: torch.device) -> Generator: ...


def check_name(name: str, flag: str, given: str) -> str:
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"{flag} {given}: the name must be letters, digits, '.', '+', '-' or '_', got {name!r}")
    return name


def split_name(given: str, flag: str) -> tuple[str, str]:
    """NAME=REST as the user wrote it, the name checked."""
    name, eq, rest = given.partition("=")
    if not eq or not rest:
        raise ValueError(f"{flag} takes NAME=DIR, got {given!r}")
    return check_name(name.strip(), flag, given), rest


def absolute_path(path: str | Path) -> str:
    """A path as a regenerating command line names it: absolute, so it works from any directory."""
    return str(Path(path).resolve())


# --- clipgen runs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSource:
    """A clipgen condition-transformer run directory."""

    name: str
    directory: Path
    sampling: dict = field(default_factory=dict)  # the comparison's settings (CompareJob.sampling)

    def describe(self) -> str:
        return f"clipgen run {self.directory}"

    def flags(self) -> list[str]:
        return [absolute_path(self.directory)]  # a value of --runs

    def check(self, num_prompts: int, num_images: int) -> None:
        if not is_gpt_run_dir(self.directory):
            raise ValueError(f"{self.directory} is not a condition-transformer run directory "
                             f"(needs {CONDITION_NAME} and {MODEL_DIR_NAME}/)")  # fmt: skip
        if "guidance_scale" in self.sampling:  # else the run's own sampling.yaml, which its maker chose
            check_guidance(read_condition(self.directory), self.sampling["guidance_scale"],
                           f"{self.directory} (--guidance-scale)")  # fmt: skip

    def open(self, device: torch.device) -> "RunGenerator":
        from clipgen.pipeline import ClipGenPipeline

        return RunGenerator(ClipGenPipeline.from_pretrained(self.directory, device=str(device)), self.sampling)


class RunGenerator:
    def __init__(self, pipe, sampling: dict):
        self.pipe, self.sampling = pipe, sampling
        self.resolution = pipe.vqgan.config.resolution

    def draw(self, prompts: Sequence[str], start: int, num_images: int, seed: int) -> list[list[Image.Image]]:
        # no re-ranking unless asked; what `sampling` names (the command names all four) is the
        # same for every run, whatever its own sampling.yaml says
        return self.pipe(list(prompts), num_images=num_images, seed=seed, **{"candidates": 0, **self.sampling})


def run_names(runs: Sequence[Path]) -> list[str]:
    """Each run's directory name; where names repeat, the second gets -2, the third -3 (names
    become sub-directories of the output, so they never hold a path)."""
    names, seen = [], {}
    for run in runs:
        name = Path(run).resolve().name
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return names


# --- folders of images -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFolderSource:
    """Images another tool drew, one file per prompt and image (SAMPLE_NAME); seeds and sampling
    settings were the other tool's."""

    name: str
    directory: Path

    @classmethod
    def parse(cls, given: str) -> "ImageFolderSource":
        name, directory = split_name(given, "--images")
        return cls(name, Path(directory))

    def describe(self) -> str:
        return f"images from {self.directory} (drawn elsewhere: seeds and settings were that tool's)"

    def flags(self) -> list[str]:
        return ["--images", f"{self.name}={absolute_path(self.directory)}"]

    def check(self, num_prompts: int, num_images: int) -> None:
        if not self.directory.is_dir():
            raise FileNotFoundError(f"--images {self.name}={self.directory}: no such directory")
        wanted = [SAMPLE_NAME.format(i=i, k=k) for i in range(num_prompts) for k in range(num_images)]
        missing = [name for name in wanted if not (self.directory / name).is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise FileNotFoundError(
                f"--images {self.name}={self.directory} lacks {len(missing)} of the {len(wanted)} images the "
                f"comparison needs ({num_prompts} prompts × {num_images}): {shown} (names as sample.py writes "
                "them: {i:04d}_{k}.png, i the prompt's 0-based index, k the image)"
            )  # fmt: skip

    def open(self, device: torch.device) -> "ImageFolderGenerator":
        return ImageFolderGenerator(self.directory)


class ImageFolderGenerator:
    def __init__(self, directory: Path):
        self.directory = directory
        first = self._read(0, 0)
        self.resolution = min(first.size)

    def _read(self, i: int, k: int) -> Image.Image:
        from clipgen.data.decode import BadImageError, decode_rgb

        path = self.directory / SAMPLE_NAME.format(i=i, k=k)
        try:
            return decode_rgb(path.read_bytes())
        except BadImageError as err:
            raise ValueError(f"{path}: {err}") from None

    def draw(self, prompts: Sequence[str], start: int, num_images: int, seed: int) -> list[list[Image.Image]]:
        return [[self._read(i, k) for k in range(num_images)] for i in range(start, start + len(prompts))]


def fit_images(images: Sequence[Image.Image], side: int) -> list[Image.Image]:
    """Images at side × side, as every metric and grid of a comparison takes them: the shorter
    side resized and the centre cropped, as shard and reference images are. Images already of that
    size pass untouched (a folder of clipgen's own samples scores exactly as the run does)."""
    from clipgen.data.transforms import ImageTransform
    from clipgen.images import to_pil

    fit = ImageTransform(side)
    return [image if image.size == (side, side) else to_pil(fit(image).unsqueeze(0))[0] for image in images]
