"""What a cheaper condition transformer costs the demo in accuracy: train the demo's no-bridge
run with config overrides on a finished demo's tokens, answer prompts through the retrieval
bridge (as the demo's `language-free/` does), and judge them.

    OMP_NUM_THREADS=1 python bench/gpt_budget.py --demo runs/demo --name l2 model.n_layer=2
    OMP_NUM_THREADS=1 python bench/gpt_budget.py --demo runs/demo --name l3-b24 model.n_layer=3 run.batch_size=24

Prints one JSON line: the overrides, training CPU seconds, the last held-out token loss and the
judge's % per attribute on 576 Chinese prompts (each attribute combination once, guidance 1.5,
top-k 1: the demo's settings). The procedure is bench/clip_loss.py's `train_and_judge`; runs go to
`--out`/NAME, and a finished one is not trained again. Step time alone, side by side, is
bench/gpt_step.py's job; this script measures what the steps buy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.clip_loss import train_and_judge  # noqa: E402
from bench.machine import cpu_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="a finished `clipgen demo` directory (its tokens, toy CLIP, VQGAN)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/gpt-budget"))
    parser.add_argument("--seed", type=int, default=0, help="the training seed (the demo's is 0)")
    parser.add_argument("overrides", nargs="*", help="config overrides for configs/gpt/shapes32.yaml")
    args = parser.parse_args()
    result = train_and_judge(args.demo.resolve(), (args.out / args.name).resolve(), args.seed, args.overrides)
    print(json.dumps({"name": args.name, "cpu": cpu_name(), **result}, ensure_ascii=False))


if __name__ == "__main__":
    main()
