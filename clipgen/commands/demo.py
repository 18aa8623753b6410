"""`clipgen demo`: the language-free pipeline on the built-in shapes-zh corpus, end to end, on a CPU.

Draws shapes-zh, trains the toy CLIP (the stand-in for a pretrained Chinese CLIP), the VQGAN on
images only, extracts tokens, trains the condition transformer on images only once per gap bridge
and the two caption-trained baselines on the same images with their captions, compares them all
with `clipgen compare` on Chinese prompts, and writes DIR/report.md. DIR/language-free (the
retrieval bridge) is a run directory for `sample.py --ckpt` and `ClipGenPipeline.from_pretrained`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--n-train", type=int, default=20000, help="shapes-zh training images (default 20000)")
    parser.add_argument("--n-heldout", type=int, default=1000, help="held-out images (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-prompts", type=int, default=576, help="prompts each generator is judged on (default 576, each attribute combination once)")
    parser.add_argument("--eval-images", type=int, default=576, help="held-out images for the no-gap reference (default 576)")
    parser.add_argument(
        "--set", dest="overrides", action="extend", nargs="+", default=[], metavar="STAGE.KEY=VALUE",
        help="override a stage's config value; STAGE is clip, vqgan or gpt (configs/{clip,vqgan,gpt}/...), "
        "e.g. --set gpt.run.max_steps=200 vqgan.optim.lr=1e-3",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from clipgen.demo import DemoOptions, run_demo
    from clipgen.errors import input_errors_exit

    options = DemoOptions(n_train=args.n_train, n_heldout=args.n_heldout, seed=args.seed,
                          eval_prompts=args.eval_prompts, eval_images=args.eval_images)  # fmt: skip
    with input_errors_exit("clipgen demo"):  # a SystemExit(2) after one line, called from Python too
        results = run_demo(Path(args.out), options, args.overrides, CONFIG_DIR)
    met = {True: "met", False: "NOT met"}
    print(f"report: {Path(args.out) / 'report.md'} (accuracy targets {met[results['targets_met']]}; "
          f"within {results['baseline_margin']} points of caption-trained: {met[results['baseline_margin_met']]})")
    return 0
