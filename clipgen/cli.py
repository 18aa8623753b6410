"""The `clipgen` command (also `python -m clipgen`).

Each subcommand lives in `clipgen/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`. Those modules import only argparse at the top and their heavy dependencies
inside `run`, so `clipgen --help` stays fast and one command's imports never slow another.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from clipgen.engine.allocator import keep_freed_memory
from clipgen.errors import input_errors_exit

# command name -> (module under clipgen.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "make-shapes": ("make_shapes", "draw the shapes-zh corpus into webdataset shards"),
    "convert": ("convert", "convert a folder, EasyNLP/MUGE TSV or FFRecord files to shards"),
    "train-vqgan": ("train_vqgan", "train the VQGAN (same as train_vqgan.py)"),
    "train-toy-clip": ("train_toy_clip", "train the toy CLIP on shapes-zh (a stand-in for Chinese CLIP)"),
    "extract": ("extract", "VQGAN codes + CLIP image embeddings into token shards"),
    "train-gpt": ("train_gpt", "train the condition transformer on token shards (same as train_gpt.py)"),
    "lpips-weights": ("lpips_weights", "build the LPIPS weights file from VGG16 and lpips' heads"),
    "import": ("import_model", "a released HFAiLab/clip-gen or EasyNLP text2image model as a clipgen run directory"),
    "compare": ("compare", "sample runs, image folders and diffusers pipelines with the same prompts and seeds; compare their metrics"),
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


def main(argv: list[str] | None = None, *, exit_on_error: bool | None = None) -> int:
    """Run a command. With exit_on_error (the default for the command line, argv None) a bad input
    ends it as argparse's own errors do: `clipgen COMMAND: error: ...` on stderr and SystemExit(2)
    (clipgen/errors.py). A caller that passes argv gets the exception itself unless it asks."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # every step reuses the pages of the last (engine/allocator.py)
    if exit_on_error is None:
        exit_on_error = argv is None
    with input_errors_exit(f"clipgen {args.command}") if exit_on_error else contextlib.nullcontext():
        return int(args._module.run(args) or 0)


def run_script(command, description: str) -> int:
    """What the top-level scripts (train_vqgan.py, train_gpt.py) run: one command's arguments and
    `run`, its input errors reported as the `clipgen` command reports them, under the script's name."""
    parser = argparse.ArgumentParser(description=description)
    command.add_arguments(parser)
    args = parser.parse_args()
    keep_freed_memory()
    with input_errors_exit(parser.prog):
        return int(command.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
