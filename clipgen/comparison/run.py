"""Sample every generator with the same prompts, seeds and sample counts, and score them the same way.

The generators are clipgen runs, folders of images drawn elsewhere and diffusers pipelines
(generators.py). Prompts are cut into batches of `batch_size`; batch b is sampled with seed
`seed + b` by every generator that takes seeds and handled by rank b mod world_size, so the images
do not depend on how many ranks there are. Every image is fitted to the comparison's side (the
first generator's: a clipgen run's VQGAN resolution) before it is scored or saved. Statistics are
sums gathered over ranks; rank 0 writes the report, after every rank has written its samples
(DIR/samples/NAME/{i:04d}_{k}.png, i the prompt's 0-based index among the prompts read, k the
sample).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image

from clipgen.comparison.diffusers_pipeline import DiffusersSource
from clipgen.comparison.generators import (
    SAMPLE_NAME, ImageFolderSource, RunSource, Source, absolute_path, fit_images, run_names,
)
from clipgen.engine.atomic import atomic_write
from clipgen.engine.dist import DistInfo, barrier
from clipgen.run_dir import CONDITION_NAME, read_condition

log = logging.getLogger("clipgen.compare")


@dataclass
class CompareJob:
    runs: list[Path]  # clipgen run directories, named by their directory names
    prompts_file: Path
    out: Path
    real: str = ""  # image shards for the reference set (else the TSV's images, else no FD)
    num_images: int = 1
    seed: int = 0
    batch_size: int = 32  # prompts per sampling batch
    clip: str = ""  # the scoring CLIP, KIND:PATH; empty: the first run's conditioning CLIP
    inception: str = ""  # InceptionV3 weights file for FID; empty: no Inception FD
    max_real: int = 10000
    max_grids: int = 64  # side-by-side grids for the first prompts (every sample is on disk anyway)
    judge: str = "auto"  # shapes-zh attribute accuracy: auto (when every prompt names a shape), shapes, off
    sampling: dict = field(default_factory=dict)  # guidance_scale, top_k, top_p, temperature (clipgen runs)
    images: list[ImageFolderSource] = field(default_factory=list)  # --images NAME=DIR
    diffusers: list[DiffusersSource] = field(default_factory=list)  # --diffusers NAME=DIR[;...]

    def sources(self) -> list[Source]:
        """Every generator, in the report's order: the runs, the image folders, the pipelines."""
        runs = [RunSource(name, Path(run), self.sampling) for name, run in zip(run_names(self.runs), self.runs)]
        return [*runs, *self.images, *self.diffusers]

    def command_line(self) -> str:
        """The `clipgen compare` command that regenerates this comparison."""
        import shlex

        absolute = absolute_path
        runs = ["--runs", *map(absolute, self.runs)] if self.runs else []
        others = [flag for source in [*self.images, *self.diffusers] for flag in source.flags()]
        args = ["clipgen", "compare", *runs, *others, "--prompts", absolute(self.prompts_file),
                "--out", absolute(self.out), "--num-images", str(self.num_images), "--seed", str(self.seed),
                "--batch-size", str(self.batch_size), "--max-real", str(self.max_real), "--max-grids", str(self.max_grids),
                "--judge", self.judge]
        for flag, value in (("--real", self.real), ("--clip", self.clip), ("--inception", self.inception and absolute(self.inception))):
            args += [flag, value] if value else []
        for key, value in self.sampling.items():
            args += ["--" + key.replace("_", "-"), str(value)]
        return shlex.join(args)  # fmt: skip


def check_job(job: CompareJob, sources: list) -> None:
    """Every argument is checked before the prompts are read (a MUGE TSV carries its images) and
    the first generator is loaded, so a typo costs seconds, not hours, and a comparison that cannot
    finish writes nothing; what depends on the prompts' count is `check_sources`."""
    from clipgen.data.loader import expand_shards

    if not sources:
        raise ValueError("nothing to compare: name clipgen runs (--runs), image folders (--images) or pipelines (--diffusers)")
    if job.num_images < 1 or job.batch_size < 1 or job.max_real < 0 or job.max_grids < 0:
        raise ValueError("num_images and batch_size must be at least 1, max_real and max_grids at least 0")
    names = [source.name for source in sources]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"two generators are named {', '.join(repeated)}: every name must be distinct")
    if job.judge not in ("auto", "shapes", "off"):
        raise ValueError(f"judge must be auto, shapes or off, got {job.judge!r}")
    if job.real:
        expand_shards(job.real)  # raises with the reason when the shards are not there


def check_sources(job: CompareJob, sources: list, num_prompts: int) -> None:
    """Each generator can answer this many prompts (an image folder holds their images)."""
    for source in sources:
        source.check(num_prompts, job.num_images)


def run_compare(job: CompareJob, info: DistInfo) -> dict:
    from clipgen.comparison.prompts import read_prompts
    from clipgen.comparison.report import write_report
    from clipgen.encoders import load_clip_spec
    from clipgen.eval.scores import GeneratedScores, clip_feature_space, feature_stats, inception_feature_space, shapes_prompts

    sources = job.sources()
    check_job(job, sources)
    prompts, references = read_prompts(job.prompts_file)
    check_sources(job, sources, len(prompts))
    scorer_spec = job.clip or _conditioning_clip(job.runs)
    scorer = load_clip_spec(scorer_spec, device=info.device)
    spaces = {"clip": clip_feature_space(scorer)}
    if job.inception:
        from clipgen.eval.inception import InceptionFeatures

        spaces["inception"] = inception_feature_space(InceptionFeatures(job.inception, device=info.device))
    judge = job.judge == "shapes" or (job.judge == "auto" and shapes_prompts(prompts))

    scored, resolution = {}, None
    for source in sources:
        generator = source.open(info.device)
        resolution = resolution or generator.resolution
        scores = GeneratedScores(spaces, scorer, judge)
        sample_dir = job.out / "samples" / source.name
        if info.is_main and sample_dir.exists():  # samples of an earlier comparison must not mix in
            shutil.rmtree(sample_dir)
        barrier()
        sample_dir.mkdir(parents=True, exist_ok=True)
        for b, start in _my_batches(len(prompts), job.batch_size, info):
            batch = prompts[start : start + job.batch_size]
            groups = [fit_images(images, resolution) for images in generator.draw(batch, start, job.num_images, job.seed + b)]
            for i, images in enumerate(groups, start=start):
                for k, image in enumerate(images):
                    with atomic_write(sample_dir / SAMPLE_NAME.format(i=i, k=k)) as tmp:
                        image.save(tmp, format="PNG")
            scores.add([im for images in groups for im in images], [p for p in batch for _ in range(job.num_images)])
        scored[source.name] = scores.gather()
        del generator  # one generator's weights in memory at a time

    real = feature_stats(spaces, _real_batches(job, references, resolution, info)) if (job.real or references) else {}
    results = {name: scores.results(real) for name, scores in scored.items()}
    for name, metrics in results.items():
        log.info("%s: %s", name, {k: round(v, 2) for k, v in metrics.items()})
    barrier()  # every rank's samples are on disk before rank 0 draws the grids
    summary = {
        "runs": {source.name: str(source.directory) for source in sources}, "metrics": results,
        "generators": {source.name: source.describe() for source in sources},
        "prompts": len(prompts), "prompts_file": str(job.prompts_file), "num_images": job.num_images,
        "seed": job.seed, "batch_size": job.batch_size, "sampling": job.sampling, "scoring_clip": scorer_spec,
        "scoring_clip_is_conditioning_clip": not job.clip, "feature_spaces": {n: space.description
        for n, space in spaces.items()}, "real_images": int(next(iter(real.values())).count) if real else 0,
        "real_source": job.real or (str(job.prompts_file) if references else ""), "judge": judge,
        "command": job.command_line(),
    }  # fmt: skip
    try:
        if info.is_main:
            write_report(job.out, summary, prompts[: job.max_grids])
    finally:
        barrier()  # reached by rank 0 even when the report fails, so no rank waits for ever
    return summary


def _conditioning_clip(runs: Sequence[Path]) -> str:
    for run in runs:
        if (Path(run) / CONDITION_NAME).is_file() and (spec := read_condition(run).clip):
            return spec
    raise ValueError("no clipgen run names a CLIP to score with: pass --clip KIND:PATH")


def _my_batches(n: int, batch_size: int, info: DistInfo) -> Iterator[tuple[int, int]]:
    for b, start in enumerate(range(0, n, batch_size)):
        if b % info.world_size == info.rank:
            yield b, start


def _real_batches(job: CompareJob, references: list[Image.Image], resolution: int, info: DistInfo) -> Iterator[list[Image.Image]]:
    """This rank's share of the reference images, at most max_real in all, 64 at a time."""
    from clipgen.data.loader import ImageDataConfig, make_image_loader
    from clipgen.images import to_pil

    if not job.real:
        # the same centre crop and size as shard images get, and as the generated images have
        mine = references[info.rank : job.max_real : info.world_size]
        for start in range(0, len(mine), 64):
            yield fit_images(mine[start : start + 64], resolution)
        return

    cfg = ImageDataConfig(shards=job.real, image_size=resolution, num_workers=0)
    loader = make_image_loader(cfg, batch_size=64, seed=0, rank=info.rank, world_size=info.world_size, train=False)
    budget = job.max_real // info.world_size
    for batch in loader:
        if budget <= 0:
            break
        images = to_pil(batch["image"][:budget])
        budget -= len(images)
        yield images
