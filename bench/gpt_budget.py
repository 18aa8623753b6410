"""What a cheaper condition transformer costs the demo in accuracy: train the demo's no-bridge
run with config overrides on a finished demo's tokens, answer prompts through the retrieval
bridge (as the demo's `language-free/` does), and judge them.

    python bench/gpt_budget.py --demo runs/demo --name l2 model.n_layer=2
    python bench/gpt_budget.py --demo runs/demo --name l3-b24 model.n_layer=3 run.batch_size=24

Prints one JSON line: the overrides, training wall and CPU seconds, and the judge's % per
attribute on 576 Chinese prompts (each attribute combination once, `full_prompts(576, seed=0)`,
guidance 1.5, top-k 1: the demo's settings). Runs go to `--out`/NAME. Step time alone, side by
side, is bench/gpt_step.py's job; this script measures what the steps buy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipgen.data.shapes import full_prompts  # noqa: E402
from clipgen.data.token_dataset import TokenData  # noqa: E402
from clipgen.demo import stages  # noqa: E402
from clipgen.eval.shapes_eval import judge_prompts  # noqa: E402
from clipgen.pipeline import ClipGenPipeline  # noqa: E402
from clipgen.train.gpt import GPTTask, GPTTrainConfig  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gpt" / "shapes32.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="a finished `clipgen demo` directory (its tokens, toy CLIP, VQGAN)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/gpt-budget"))
    parser.add_argument("--retrieval-k", type=int, default=4)
    parser.add_argument("overrides", nargs="*", help="config overrides for configs/gpt/shapes32.yaml")
    args = parser.parse_args()
    demo, out = args.demo.resolve(), (args.out / args.name).resolve()
    wall, cpu = time.time(), time.process_time()
    stages.train_stage(GPTTrainConfig, CONFIG, [
        f"run.out_dir={out / 'none'}", f"data.train={demo / 'tokens' / 'train'}", f"data.val={demo / 'tokens' / 'heldout'}",
        f"condition.clip=toy:{demo / 'toy-clip' / 'model'}", f"condition.vqgan={demo / 'vqgan'}",
        f"condition.gap.text_file={demo / 'data' / 'unpaired-texts.txt'}", "run.seed=0", "condition.gap.bridge=none",
        *args.overrides], GPTTask, lambda cfg: cfg.model)  # fmt: skip
    wall, cpu = time.time() - wall, time.process_time() - cpu
    bank = TokenData.load(str(demo / "tokens" / "train")).clip
    run = stages.derive_retrieval_run(out / "none", out / "language-free", bank, args.retrieval_k, 0)
    prompts = [text for text, _ in full_prompts(576, seed=0)]
    score = judge_prompts(ClipGenPipeline.from_pretrained(run), prompts, guidance_scale=1.5, top_k=1)[0].accuracy()
    print(json.dumps({"name": args.name, "overrides": args.overrides, "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
                      "pct": {k: round(v, 1) for k, v in score.items()}}, ensure_ascii=False))  # fmt: skip


if __name__ == "__main__":
    main()
