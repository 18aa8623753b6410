"""What the demo measures on its generators: every metric of `clipgen compare` from Chinese prompts
(each generator), and for the language-free model attribute accuracy from held-out image
embeddings (no gap) and on VQGAN reconstructions (the tokenizer's ceiling)."""

from __future__ import annotations

from pathlib import Path

import torch

from clipgen.data.shapes import full_prompts
from clipgen.eval.shapes_eval import judge_image_conditioned
from clipgen.eval.shapes_judge import AttributeScore, read_image
from clipgen.sampling import SamplingSettings


def heldout_images(heldout_shards: Path, limit: int) -> tuple[list, list[dict]]:
    """The first `limit` held-out images (PIL) and their labels."""
    from clipgen.data.loader import ImageDataConfig, make_image_loader
    from clipgen.images import to_pil

    loader = make_image_loader(ImageDataConfig(shards=str(heldout_shards), image_size=32, num_workers=0), batch_size=128, seed=0, train=False)
    images, labels = [], []
    for batch in loader:
        images += to_pil(batch["image"])
        labels += [meta["labels"] for meta in batch["meta"]]
        if len(images) >= limit:
            break
    return images[:limit], labels[:limit]


def compare_runs(run_dirs: list[Path], data: Path, out: Path, n_prompts: int, seed: int, sampling: SamplingSettings) -> dict:
    """`clipgen compare` over the demo's generators: `n_prompts` shapes-zh prompts naming all four
    attributes (data/eval-prompts.txt), one sample each, the held-out images as the real set; its
    report, grids and samples go to `out`."""
    from clipgen.comparison import CompareJob, run_compare
    from clipgen.engine.dist import init_distributed

    prompts = data / "eval-prompts.txt"
    prompts.write_text("\n".join(text for text, _ in full_prompts(n_prompts, seed=seed)) + "\n", encoding="utf-8")
    job = CompareJob(runs=run_dirs, prompts_file=prompts, out=out, real=str(data / "heldout"), seed=seed, batch_size=96,
                     max_grids=16, sampling=sampling.sampler_kwargs())  # fmt: skip
    return run_compare(job, init_distributed("auto"))


def score_from_images(pipe, images, labels, seed: int, sampling: SamplingSettings) -> AttributeScore:
    return judge_image_conditioned(pipe, images, labels, seed=seed, **sampling.sampler_kwargs())


@torch.no_grad()
def score_reconstructions(vqgan, images, labels, batch_size: int = 256) -> tuple[AttributeScore, list[dict]]:
    """Judge the VQGAN's reconstructions of `images`; also return, per batch, the reconstructions
    ([-1, 1]), the inputs and the code indices, for callers that measure more than the judge."""
    from clipgen.images import from_pil, to_pil

    score, batches = AttributeScore(), []
    device = next(vqgan.parameters()).device
    for start in range(0, len(images), batch_size):
        pixels = from_pil(images[start : start + batch_size]).float().to(device) / 127.5 - 1
        reconstructions, quantized = vqgan(pixels)
        score.add_all((read_image(r) for r in to_pil(reconstructions)), labels[start : start + batch_size])
        batches.append({"pixels": pixels, "reconstructions": reconstructions, "indices": quantized.indices})
    return score, batches


def prompt_grid(pipe, prompts: list[str], per_prompt: int, seed: int, sampling: SamplingSettings, path: Path) -> Path:
    """One row per prompt, `per_prompt` samples each, upscaled 2x without smoothing."""
    from PIL import Image

    from clipgen.engine.atomic import atomic_write

    rows = pipe(prompts, num_images=per_prompt, seed=seed, **sampling.sampler_kwargs())
    side = rows[0][0].size[0] * 2
    sheet = Image.new("RGB", (per_prompt * (side + 2), len(rows) * (side + 2)), (255, 255, 255))
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            sheet.paste(image.resize((side, side), Image.NEAREST), (c * (side + 2), r * (side + 2)))
    with atomic_write(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
