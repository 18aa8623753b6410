"""The `clipgen` command (also `python -m clipgen`).

Each subcommand lives in `clipgen/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`. Those modules import only argparse at the top and their heavy dependencies
inside `run`, so `clipgen --help` stays fast and one command's imports never slow another.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module under clipgen.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "make-shapes": ("make_shapes", "draw the shapes-zh corpus into webdataset shards"),
    "convert": ("convert", "convert a folder, EasyNLP/MUGE TSV or FFRecord files to shards"),
    "train-vqgan": ("train_vqgan", "train the VQGAN (same as train_vqgan.py)"),
    "train-toy-clip": ("train_toy_clip", "train the toy CLIP on shapes-zh (a stand-in for Chinese CLIP)"),
    "extract": ("extract", "VQGAN codes + CLIP image embeddings into token shards"),
    "train-gpt": ("train_gpt", "train the condition transformer on token shards (same as train_gpt.py)"),
    "lpips-weights": ("lpips_weights", "build the LPIPS weights file from VGG16 and lpips' heads"),
    "compare": ("compare", "sample several runs with the same prompts and seeds, and compare their metrics"),
    "demo": ("demo", "run the pipeline on shapes-zh, end to end"),
    "serve": ("serve", "a web page and JSON API to draw images from one run or several side by side"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipgen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"clipgen.commands.{module_name}")
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
