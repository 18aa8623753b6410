"""Sample every run with the same prompts, seeds and sample counts, and score them the same way.

Prompts are cut into batches of `batch_size`; batch b is sampled with seed `seed + b` by every run
and handled by rank b mod world_size, so the images do not depend on how many ranks there are.
Statistics are sums gathered over ranks; rank 0 writes the report, after every rank has written
its samples (DIR/samples/RUN/{i:04d}_{k}.png, i the prompt's 0-based line, k the sample).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image

from clipgen.engine.dist import DistInfo, barrier

log = logging.getLogger("clipgen.compare")


@dataclass
class CompareJob:
    runs: list[Path]
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
    sampling: dict = field(default_factory=dict)  # guidance_scale, top_k, top_p, temperature

    def command_line(self) -> str:
        """The `clipgen compare` command that regenerates this comparison."""
        import shlex

        args = ["clipgen", "compare", "--runs", *map(str, self.runs), "--prompts", str(self.prompts_file),
                "--out", str(self.out), "--num-images", str(self.num_images), "--seed", str(self.seed),
                "--batch-size", str(self.batch_size), "--max-real", str(self.max_real), "--max-grids", str(self.max_grids)]
        for flag, value in (("--real", self.real), ("--clip", self.clip), ("--inception", self.inception)):
            args += [flag, value] if value else []
        for key, value in self.sampling.items():
            args += ["--" + key.replace("_", "-"), str(value)]
        return shlex.join(args)  # fmt: skip


def run_names(runs: Sequence[Path]) -> list[str]:
    """Each run's directory name, or its whole path where two names clash."""
    names = [Path(run).name for run in runs]
    return [name if names.count(name) == 1 else str(run) for name, run in zip(names, runs)]


def run_compare(job: CompareJob, info: DistInfo) -> dict:
    from clipgen.comparison.prompts import read_prompts
    from clipgen.comparison.report import write_report
    from clipgen.encoders import load_clip_spec
    from clipgen.eval.scores import GeneratedScores, clip_feature_space, feature_stats, inception_feature_space, shapes_prompts
    from clipgen.pipeline import ClipGenPipeline

    if not job.runs:
        raise ValueError("no runs to compare")
    if job.num_images < 1 or job.batch_size < 1:
        raise ValueError("num_images and batch_size must be at least 1")
    prompts, references = read_prompts(job.prompts_file)
    names = run_names(job.runs)
    scorer_spec = job.clip or _conditioning_clip(job.runs)
    scorer = load_clip_spec(scorer_spec, device=info.device)
    spaces = {"clip": clip_feature_space(scorer)}
    if job.inception:
        from clipgen.eval.inception import InceptionFeatures

        spaces["inception"] = inception_feature_space(InceptionFeatures(job.inception, device=info.device))
    judge = shapes_prompts(prompts)

    scored, resolution = {}, None
    for name, run_dir in zip(names, job.runs):
        pipe = ClipGenPipeline.from_pretrained(run_dir, device=str(info.device))
        resolution = resolution or pipe.vqgan.config.resolution
        scores = GeneratedScores(spaces, scorer, judge)
        sample_dir = job.out / "samples" / name
        sample_dir.mkdir(parents=True, exist_ok=True)
        for b, start in _my_batches(len(prompts), job.batch_size, info):
            batch = prompts[start : start + job.batch_size]
            groups = pipe(batch, num_images=job.num_images, seed=job.seed + b, **job.sampling)
            for i, images in enumerate(groups, start=start):
                for k, image in enumerate(images):
                    image.save(sample_dir / f"{i:04d}_{k}.png")
            scores.add([im for images in groups for im in images], [p for p in batch for _ in range(job.num_images)])
        scored[name] = scores.gather()

    real = feature_stats(spaces, _real_batches(job, references, resolution, info)) if (job.real or references) else {}
    results = {name: scores.results(real) for name, scores in scored.items()}
    for name, metrics in results.items():
        log.info("%s: %s", name, {k: round(v, 2) for k, v in metrics.items()})
    barrier()  # every rank's samples are on disk before rank 0 draws the grids
    summary = {
        "runs": {name: str(run) for name, run in zip(names, job.runs)}, "metrics": results,
        "prompts": len(prompts), "prompts_file": str(job.prompts_file), "num_images": job.num_images,
        "seed": job.seed, "batch_size": job.batch_size, "sampling": job.sampling, "scoring_clip": scorer_spec,
        "scoring_clip_is_conditioning_clip": not job.clip, "feature_spaces": {n: space.description
        for n, space in spaces.items()}, "real_images": int(next(iter(real.values())).count) if real else 0,
        "real_source": job.real or (str(job.prompts_file) if references else ""), "judge": judge,
        "command": job.command_line(),
    }  # fmt: skip
    if info.is_main:
        write_report(job.out, summary, prompts[: job.max_grids])
    barrier()
    return summary


def _conditioning_clip(runs: Sequence[Path]) -> str:
    from clipgen.config import load_config
    from clipgen.train.gpt import ConditionConfig

    for run in runs:
        path = Path(run) / "condition.yaml"
        if path.is_file() and (spec := load_config(ConditionConfig, path).clip):
            return spec
    raise ValueError("no run names a CLIP to score with: pass --clip KIND:PATH")


def _my_batches(n: int, batch_size: int, info: DistInfo) -> Iterator[tuple[int, int]]:
    for b, start in enumerate(range(0, n, batch_size)):
        if b % info.world_size == info.rank:
            yield b, start


def _real_batches(job: CompareJob, references: list[Image.Image], resolution: int, info: DistInfo) -> Iterator[list[Image.Image]]:
    """This rank's share of the reference images, at most max_real in all, 64 at a time."""
    if not job.real:
        mine = references[info.rank : job.max_real : info.world_size]
        for start in range(0, len(mine), 64):
            yield mine[start : start + 64]
        return
    from clipgen.data.loader import ImageDataConfig, make_image_loader
    from clipgen.images import to_pil

    cfg = ImageDataConfig(shards=job.real, image_size=resolution, num_workers=0)
    loader = make_image_loader(cfg, batch_size=64, seed=0, rank=info.rank, world_size=info.world_size, train=False)
    budget = job.max_real // info.world_size
    for batch in loader:
        if budget <= 0:
            break
        images = to_pil(batch["image"][:budget])
        budget -= len(images)
        yield images
