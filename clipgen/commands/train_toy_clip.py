"""`clipgen train-toy-clip`: train the shapes-zh stand-in CLIP (images and captions)."""

from __future__ import annotations

import argparse

from clipgen.engine.script import add_training_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from clipgen.engine.script import run_training
    from clipgen.train.toy_clip import ToyClipTask, ToyClipTrainConfig

    return run_training(args, ToyClipTrainConfig, ToyClipTask, lambda cfg: cfg.model)
