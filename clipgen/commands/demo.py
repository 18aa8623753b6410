"""`clipgen demo`: the pipeline on the built-in shapes-zh corpus, end to end, on a CPU.

Today it covers the stages that exist: draw shapes-zh, train the VQGAN on the images alone,
and write `report.md` with the held-out reconstruction metrics and the time of each stage.
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
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a value of the VQGAN config (configs/vqgan/shapes32.yaml), e.g. run.max_steps=200",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from clipgen.demo import run_demo

    run_demo(Path(args.out), args.n_train, args.n_heldout, args.seed, args.overrides, CONFIG_DIR)
    return 0
