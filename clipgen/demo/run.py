"""The shapes-zh demo, end to end: corpus, toy CLIP, VQGAN, extraction, condition transformers
(one per gap bridge, trained on images only, and the two caption-trained baselines on the same
images with their captions), a comparison of all of them, and the report. Every stage resumes, so a second call finishes an
interrupted demo instead of starting over."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clipgen.demo import stages
from clipgen.sampling import SamplingSettings, write_run_sampling
from clipgen.demo.evaluate import (
    compare_runs,
    heldout_images,
    prompt_grid,
    score_from_images,
    score_reconstructions,
)

log = logging.getLogger("clipgen.demo")

STAGE_PREFIXES = ("clip", "vqgan", "gpt")
TARGETS = {"colour": 95, "shape": 90, "size": 90, "position": 90}  # issue 3, from Chinese prompts
BASELINE_MARGIN = 5  # issue 4: language-free within this many points of caption-trained, per attribute
GRID_PROMPTS = [
    "左上有一个大的红色圆形",
    "中间有一个小的蓝色正方形",
    "右下角有一个大的黄色三角形",
    "上方有一个小的绿色十字",
    "左边有一个大的紫色方块",
    "下面有一个小的白色圆圈",
    "右上有一个大的橙色加号",
    "左下角有一个小的黑色三角",
]


@dataclass
class DemoOptions:
    n_train: int = 20000
    n_heldout: int = 1000
    seed: int = 0
    retrieval_k: int = 4  # the language-free model's bridge: the mean of this many nearest training images
    eval_prompts: int = 576  # each of the 576 attribute combinations once
    eval_images: int = 576  # held-out images for the no-gap reference and the reconstructions
    # judged samples: greedy; every generator's run dir keeps these as its own (sampling.yaml)
    sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(guidance_scale=1.5, top_k=1))
    grid_sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(guidance_scale=1.5, top_k=4))  # variety
    # The bridges trained, with their settings. Noise scales are for the toy CLIP's 64-d space:
    # LAFITE's xi is relative to the embedding's norm; C3's is per dimension. DIR/language-free
    # (the retrieval bridge) is made from the no-bridge run, which it trains exactly as.
    bridges: dict[str, list[str]] = field(default_factory=lambda: {
        "none": ["condition.gap.bridge=none"],
        "lafite": ["condition.gap.bridge=lafite", "condition.gap.noise=0.5"],
        "c3": ["condition.gap.bridge=c3", "condition.gap.noise=0.02"],
    })  # fmt: skip


def split_overrides(overrides: list[str]) -> dict[str, list[str]]:
    """`clip.run.max_steps=5` -> {"clip": ["run.max_steps=5"]}; every override names its stage."""
    split: dict[str, list[str]] = {prefix: [] for prefix in STAGE_PREFIXES}
    for item in overrides:
        stage, dot, rest = item.partition(".")
        if stage not in split or not dot:
            raise ValueError(f"demo override {item!r} must start with a stage: one of {', '.join(p + '.' for p in STAGE_PREFIXES)}")
        split[stage].append(rest)
    return split


@contextlib.contextmanager
def _timed(times: dict[str, float], name: str):
    log.info("demo: %s ...", name)
    start = time.time()
    yield
    times[name] = time.time() - start


def run_demo(out: Path, options: DemoOptions, overrides: list[str], config_dir: Path) -> dict:
    from clipgen.engine.logging import setup_console_logging
    from clipgen.train.toy_clip import ToyClipTask, ToyClipTrainConfig
    from clipgen.train.vqgan import VQGANTask, VQGANTrainConfig

    setup_console_logging(True)
    stage_overrides = split_overrides(overrides)
    if "none" not in options.bridges:
        raise ValueError("the demo's bridges must include none: DIR/language-free is made from that run")
    out = out.resolve()  # the run directories name each other: absolute paths work from anywhere
    stages.claim_output_dir(out, {"options": asdict(options), "overrides": stage_overrides})
    data, times, seed = out / "data", {}, options.seed

    with _timed(times, "make-shapes"):
        stages.draw_corpus(data / "train", options.n_train, seed)
        stages.draw_corpus(data / "heldout", options.n_heldout, seed + 1)
        texts = stages.write_unpaired_texts(data / "unpaired-texts.txt", 2000, seed + 2)
    # the two stages that learn from images (the toy CLIP also from captions), on the same shards
    image_stages = {
        "toy-clip": (ToyClipTrainConfig, "clip/toy_shapes32.yaml", ToyClipTask, "clip"),
        "vqgan": (VQGANTrainConfig, "vqgan/shapes32.yaml", VQGANTask, "vqgan"),
    }
    finished = {}
    for name, (config_cls, yaml_name, task_cls, prefix) in image_stages.items():
        with _timed(times, f"train-{name}"):
            finished[name] = stages.train_stage(
                config_cls, config_dir / yaml_name,
                [f"run.out_dir={out / name}", f"data.shards={data / 'train'}", f"eval.shards={data / 'heldout'}",
                 f"run.seed={seed}", *stage_overrides[prefix]],
                task_cls, lambda cfg: cfg.model,
            )  # fmt: skip
    clip, vqgan = finished["toy-clip"], finished["vqgan"]
    clip_dir = out / "toy-clip" / "model"
    with _timed(times, "extract"):
        for split in ("train", "heldout"):
            stages.extract_tokens(out / "vqgan", clip_dir, data / split, out / "tokens" / split)
    gap = stages.measure_gap(out / "tokens" / "heldout")
    from clipgen.data.token_dataset import TokenData

    train_tokens = TokenData.load(str(out / "tokens" / "train"))  # read once: captions, image embeddings
    vocab = stages.write_caption_vocab(data / "caption-vocab.txt", train_tokens.captions())

    runs = generator_runs(options, *vocab)
    run_dirs = {name: out / name for name in runs}
    gpt_overrides = {
        name: [f"run.out_dir={run_dirs[name]}", f"data.train={out / 'tokens' / 'train'}",
               f"data.val={out / 'tokens' / 'heldout'}", f"condition.clip=toy:{clip_dir}",
               f"condition.vqgan={out / 'vqgan'}", f"condition.gap.text_file={texts}", f"run.seed={seed}",
               *run_overrides, *stage_overrides["gpt"]]
        for name, run_overrides in runs.items()
    }  # fmt: skip
    with _timed(times, f"train-gpt ({len(runs)} runs, two at a time)"):
        trained = stages.train_gpts_side_by_side(config_dir / "gpt" / "shapes32.yaml", gpt_overrides)
    gpt_results = {name: result for name, (result, _) in trained.items()}
    gpt_seconds = {name: round(seconds, 1) for name, (_, seconds) in trained.items()}  # overlapping: not stages

    with _timed(times, "language-free (retrieval bridge on the no-bridge weights)"):
        retrieval_dir = stages.derive_retrieval_run(
            run_dirs["bridge-none"], out / "language-free", train_tokens.clip, options.retrieval_k, seed
        )
        # the comparison's rows: language-free with each bridge, the chosen one last, then the baselines
        bridged = {name: d for name, d in run_dirs.items() if name.startswith("bridge-")}
        baselines = {name: d for name, d in run_dirs.items() if name not in bridged}
        compared = {**bridged, "language-free": retrieval_dir, **baselines}

    with _timed(times, "evaluate"):
        from clipgen.pipeline import ClipGenPipeline

        comparison = compare_runs(list(compared.values()), data, out / "compare", options.eval_prompts, seed, options.sampling)
        for run_dir in compared.values():  # what they were judged with is what they are best sampled with
            write_run_sampling(run_dir, options.sampling)
        accuracy = {name: {a: comparison["metrics"][name][a] for a in TARGETS} for name in compared}
        main = ClipGenPipeline.from_pretrained(compared["language-free"])
        images, labels = heldout_images(data / "heldout", options.eval_images)
        image_conditioned = score_from_images(main, images, labels, seed, options.sampling).accuracy()
        reconstructions = score_reconstructions(main.vqgan, images, labels)[0].accuracy()
        prompt_grid(main, GRID_PROMPTS, 8, seed, options.grid_sampling, out / "grid.png")
        _plot_curves(out, run_dirs)

    language_free, caption_trained = accuracy["language-free"], accuracy["caption-trained"]
    results = {
        "stage_seconds": times, "targets": TARGETS, "baseline_margin": BASELINE_MARGIN, "eval_prompts": options.eval_prompts,
        "sampling": ", ".join(f"{k} {v}" for k, v in options.sampling.sampler_kwargs().items()),
        "language_free": {"bridge": f"retrieval (k {options.retrieval_k})", "dir": "language-free"},
        "accuracy": accuracy, "comparison": comparison, "image_conditioned": image_conditioned,
        "reconstructions": reconstructions, "gap": gap, "toy_clip": clip, "vqgan": vqgan, "gpt": gpt_results,
        "gpt_run_seconds": gpt_seconds,
        "grid_prompts": GRID_PROMPTS,
        "targets_met": all(language_free[name] >= target for name, target in TARGETS.items()),
        "baseline_margin_met": all(language_free[a] >= caption_trained[a] - BASELINE_MARGIN for a in TARGETS),
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    from clipgen.demo.report import write_report

    log.info("demo: wrote %s", write_report(out, results))
    return results


def generator_runs(options: DemoOptions, caption_vocab: Path, vocab_size: int, caption_length: int) -> dict[str, list[str]]:
    """Run directory name -> config overrides: one language-free run per trained bridge, then the
    caption-trained and the text-token baselines on the same images."""
    runs = {f"bridge-{b}": o for b, o in options.bridges.items()}
    runs["caption-trained"] = ["condition.source=caption", "condition.gap.bridge=none"]
    # EasyNLP's layout: caption ids then image codes in one sequence, so no per-token condition
    runs["text-token"] = ["condition.source=caption-tokens", "condition.gap.bridge=none", f"condition.caption_vocab={caption_vocab}",
                          f"model.n_prefix={caption_length}", f"model.text_vocab_size={vocab_size}", "model.cond_every_token=false",
                          "model.cond_every_layer=false"]  # fmt: skip
    return runs


def _plot_curves(out: Path, run_dirs: dict[str, Path]) -> Path:
    from clipgen.plots import plot_training_curves

    return plot_training_curves(
        {
            "toy CLIP: InfoNCE loss": {"train": (out / "toy-clip", "train/loss")},
            "VQGAN: reconstruction loss": {"train": (out / "vqgan", "train/rec")},
            "condition transformer: token loss": {name: (d, "train/loss") for name, d in run_dirs.items()},
            "condition transformer: held-out token loss": {name: (d, "eval/val_loss") for name, d in run_dirs.items()},
        },
        out / "curves.png",
    )
