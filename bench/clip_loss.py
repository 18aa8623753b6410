"""CLIP-GEN's embedding-reconstruction loss against the shipped recipe on shapes-zh, at equal CPU time.

    OMP_NUM_THREADS=1 python bench/clip_loss.py --demo runs/demo --out runs/clip-loss --clip-weight 1 [--seed 1] [--equal-steps]

On a demo run's tokens, toy CLIP and VQGAN (`clipgen demo` writes them):
1. times `--timing-steps` training steps of each recipe with time.process_time (after warm-up);
2. trains the shipped recipe (configs/gpt/shapes32.yaml, no bridge, its max_steps) and the same
   recipe with loss.clip_weight for as many steps as the same CPU time buys;
3. answers the 576 Chinese prompts (each attribute combination once) through the retrieval
   bridge, as the demo's language-free run does, and judges each attribute.
Both runs are printed side by side; `--equal-steps` adds the recipe stopped at the CLIP run's step
count, which tells a term that hurts from one that only costs time. A finished run is not trained again (its result.json stays).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from clipgen.config import load_config
from clipgen.data.shapes import full_prompts
from clipgen.data.token_dataset import TokenData
from clipgen.demo import stages
from clipgen.engine.dist import DistInfo
from clipgen.eval.shapes_eval import judge_prompts
from clipgen.pipeline import ClipGenPipeline
from clipgen.train.gpt import GPTTask, GPTTrainConfig

RECIPE = Path(__file__).parent.parent / "configs/gpt/shapes32.yaml"
WARMUP_STEPS = 5


def demo_overrides(demo: Path, out: Path, seed: int = 0) -> list[str]:
    """The demo's no-bridge run, as `clipgen demo` trains it (with seed 0)."""
    return [f"run.out_dir={out}", f"data.train={demo / 'tokens/train'}", f"data.val={demo / 'tokens/heldout'}",
            f"condition.clip=toy:{demo / 'toy-clip/model'}", f"condition.vqgan={demo / 'vqgan'}",
            f"run.seed={seed}", "condition.gap.bridge=none"]  # fmt: skip


def cpu_seconds_per_step(overrides: list[str], steps: int) -> float:
    task = GPTTask(load_config(GPTTrainConfig, RECIPE, overrides), DistInfo())
    batches = task.train_batches(0)
    for step in range(WARMUP_STEPS):
        task.train_step([next(batches)], step)
    start = time.process_time()
    for step in range(WARMUP_STEPS, WARMUP_STEPS + steps):
        task.train_step([next(batches)], step)
    return (time.process_time() - start) / steps


def train_and_judge(demo: Path, out: Path, seed: int, overrides: list[str]) -> dict:
    result_file = out / "result.json"
    if result_file.is_file():  # a finished run is not trained again, but only for the same overrides
        result = json.loads(result_file.read_text())
        if result["overrides"] != overrides or result.get("seed") != seed:
            raise SystemExit(f"{out} holds a run with the overrides {result['overrides']} and seed {result.get('seed')}, not "
                             f"{overrides} and {seed}: use another name or --out")  # fmt: skip
        return result
    start = time.process_time()
    stages.train_stage(GPTTrainConfig, RECIPE, demo_overrides(demo, out / "none", seed) + overrides, GPTTask, lambda cfg: cfg.model)
    train_cpu = time.process_time() - start
    train_clip = TokenData.load(str(demo / "tokens/train")).clip
    run = stages.derive_retrieval_run(out / "none", out / "language-free", train_clip, 4, 0)
    prompts = [text for text, _ in full_prompts(576, seed=0)]
    with torch.no_grad():
        score, _ = judge_prompts(ClipGenPipeline.from_pretrained(run), prompts, guidance_scale=1.5, top_k=1)
    metrics = [json.loads(line) for line in (out / "none" / "metrics.jsonl").read_text().splitlines()]
    val_loss = [row["eval/val_loss"] for row in metrics if "eval/val_loss" in row]
    result = {"overrides": overrides, "seed": seed, "train_cpu_s": round(train_cpu, 1), "val_loss": val_loss[-1] if val_loss else None,
              "pct": {k: round(v, 1) for k, v in score.accuracy().items()}}  # fmt: skip
    result_file.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="a `clipgen demo` output directory")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clip-weight", type=float, default=1.0)
    parser.add_argument("--clip-estimator", default="straight_through")
    parser.add_argument("--timing-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="the training seed of both runs (the demo's is 0)")
    parser.add_argument("--equal-steps", action="store_true",
                        help="also the recipe at the CLIP run's step count: is the term worse per step, or only slower?")
    parser.add_argument("recipe", nargs="*", help="overrides of configs/gpt/shapes32.yaml for every run (e.g. model.n_layer=4)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clip_settings = [*args.recipe, f"loss.clip_weight={args.clip_weight}", f"loss.clip_estimator={args.clip_estimator}"]
    # measured once per --out and reused by later calls there (their runs then get the same step budget)
    timing = args.out / "timing.json"
    if not timing.is_file():
        scratch = args.out / "timing-scratch"
        base = cpu_seconds_per_step(demo_overrides(args.demo, scratch) + args.recipe, args.timing_steps)
        clip = cpu_seconds_per_step(demo_overrides(args.demo, scratch) + clip_settings, args.timing_steps)
        args.out.mkdir(parents=True, exist_ok=True)
        timing.write_text(json.dumps({"base_s_per_step": base, "clip_s_per_step": clip, "clip_settings": clip_settings}))
    step_time = json.loads(timing.read_text())
    if step_time.get("clip_settings", clip_settings) != clip_settings:  # reused on purpose: one step budget per --out
        print(f"the step ratio is reused from {timing}: measured with {step_time['clip_settings']}, not these settings", flush=True)
    ratio = step_time["clip_s_per_step"] / step_time["base_s_per_step"]
    base_steps = load_config(GPTTrainConfig, RECIPE, args.recipe).run.max_steps
    clip_steps = round(base_steps / ratio)
    print(f"CPU s/step: recipe {step_time['base_s_per_step']:.4f}, with the CLIP loss {step_time['clip_s_per_step']:.4f} "
          f"(x{ratio:.2f}): {base_steps} against {clip_steps} steps", flush=True)  # fmt: skip
    clip_name = f"clip-{args.clip_estimator}-{args.clip_weight:g}"
    runs = {
        f"recipe, seed {args.seed}": (base_steps, train_and_judge(args.demo, args.out / f"recipe-seed{args.seed}", args.seed, args.recipe)),
        f"{clip_name}, seed {args.seed}": (clip_steps, train_and_judge(
            args.demo, args.out / f"{clip_name}-seed{args.seed}", args.seed, clip_settings + [f"run.max_steps={clip_steps}"])),
    }  # fmt: skip
    if args.equal_steps:
        runs[f"recipe at {clip_steps} steps, seed {args.seed}"] = (clip_steps, train_and_judge(
            args.demo, args.out / f"recipe-{clip_steps}-steps-seed{args.seed}", args.seed, [*args.recipe, f"run.max_steps={clip_steps}"]))  # fmt: skip
    print("| run | steps | train CPU s | val loss | colour | shape | size | position |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (steps, result) in runs.items():
        pct = result["pct"]
        print(f"| {name} | {steps} | {result['train_cpu_s']} | {result['val_loss']:.4f} | {pct['colour']} | {pct['shape']} | "
              f"{pct['size']} | {pct['position']} |")  # fmt: skip


if __name__ == "__main__":
    main()
