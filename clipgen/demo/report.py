"""`report.md`: what the demo trained, what it measured, and how long each stage took."""

from __future__ import annotations

import math
from pathlib import Path

ATTRIBUTE_HEADER = "| colour | shape | size | position |"
RUN_LABELS = {
    "bridge-none": "language-free, no bridge", "bridge-lafite": "language-free, LAFITE bridge",
    "bridge-c3": "language-free, C³ bridge", "language-free": "**language-free, retrieval bridge** (`language-free/`)",
    "caption-trained": "caption-trained (CLIP text embedding)",
    "text-token": "text-token (EasyNLP-style)",
}  # fmt: skip


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f}"


def _accuracy_row(label: str, accuracy: dict[str, float]) -> str:
    return f"| {label} | " + " | ".join(_pct(accuracy[name]) for name in ("colour", "shape", "size", "position")) + " |"


def write_report(out: Path, results: dict) -> Path:
    from clipgen.comparison.report import markdown_table

    targets, margin = results["targets"], results["baseline_margin"]
    vq, clip, gap = results["vqgan"], results["toy_clip"], results["gap"]
    main = results["language_free"]
    lines = [
        "# clipgen demo on shapes-zh",
        "",
        "A generator trained on **images only** draws what a Chinese prompt says. The CLIP here is the",
        "**toy CLIP**, a stand-in for a pretrained Chinese CLIP trained on shapes-zh captions (plain",
        "InfoNCE, learned temperature, so a real modality gap appears); the VQGAN and the language-free",
        "condition transformers never see a caption (the baselines below do). Attribute accuracy comes from a geometric judge that reads",
        "colour, shape, size and position from pixels (`clipgen.eval.shapes_judge`; 100 % on ground truth).",
        "",
        f"The language-free model is `language-free/` (bridge **{main['bridge']}**); from the clipgen "
        f"checkout: `python sample.py --ckpt {out / 'language-free'} --prompt 左上有一个大的红色圆形`.",
        "",
        "## Chinese prompts, language-free model",
        "",
        "![prompt grid](grid.png)",
        "",
        "Rows, top to bottom: " + " · ".join(results["grid_prompts"]),
        "",
        f"## Language-free against caption-trained, {results['eval_prompts']} prompts naming all four attributes",
        "",
        "Every generator is the same condition transformer on the same images and tokens; only what it is",
        "conditioned on in training differs. Language-free: the toy CLIP's **image** embedding (no caption",
        "is read), through a gap bridge; the retrieval bridge answers a prompt with the mean of its nearest",
        "training-image embeddings, and trains exactly as no bridge does, so `language-free/` holds the",
        "no-bridge run's weights (`derived-from.json`). Caption-trained: the CLIP **text** embedding of each image's own",
        "caption. Text-token (EasyNLP's layout): the caption's character ids, then the image codes, in one",
        "sequence. All are sampled from the same Chinese prompts with the same seeds "
        f"({results['sampling']}) by `clipgen compare` (report, grids and samples in `compare/`).",
        "",
        markdown_table({RUN_LABELS.get(name, name): values for name, values in results["comparison"]["metrics"].items()}, "generator"),
        "",
        f"FD (CLIP): Fréchet distance to {results['comparison']['real_images']} held-out images in the toy CLIP's image space; "
        "CLIP score: mean max(100·cos, 0) under the toy CLIP (the only CLIP here, also the conditioning one).",
        "",
        f"Targets: language-free colour ≥ {targets['colour']}, shape ≥ {targets['shape']}, size ≥ {targets['size']}, "
        f"position ≥ {targets['position']} (**{'met' if results['targets_met'] else 'not met'}**); language-free within "
        f"{margin} points of caption-trained on every attribute (**{'met' if results['baseline_margin_met'] else 'not met'}**).",
        "",
        "References for the language-free model:",
        "",
        "| condition " + ATTRIBUTE_HEADER,
        "|---|---|---|---|---|",
        _accuracy_row("held-out image embeddings (no gap)", results["image_conditioned"]),
        _accuracy_row("VQGAN reconstructions (the tokenizer's ceiling)", results["reconstructions"]),
        "",
        "## The modality gap (toy CLIP, held-out images and their own captions)",
        "",
        "| statistic | value |",
        "|---|---|",
        f"| mean cosine of matching image/text pairs | {gap['pair_cosine']:.3f} |",
        f"| distance between the image and text mean embeddings | {gap['mean_distance']:.3f} |",
        "",
        "## Stages",
        "",
        "![training curves](curves.png)",
        "",
        "| stage | result |",
        "|---|---|",
        f"| toy CLIP | {clip['step']} steps, held-out retrieval top-1 {100 * clip.get('retrieval_top1', float('nan')):.1f} % |",
        f"| VQGAN | {vq['step']} steps, held-out PSNR {vq.get('psnr', float('nan')):.2f} dB, "
        f"{vq.get('codebook_usage_pct', float('nan')):.1f} % of codes in use |",
    ]
    for name, gpt in results["gpt"].items():
        lines.append(f"| {RUN_LABELS.get(name, name)} | {gpt['step']} steps, held-out token loss {gpt.get('val_loss', float('nan')):.3f} |")
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in results["stage_seconds"].items()]
    lines += [f"| **total** | **{sum(results['stage_seconds'].values()):.1f}** |", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
