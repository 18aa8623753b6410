"""`clipgen train-gpt` / `train_gpt.py`: train the condition transformer on token shards."""

from __future__ import annotations

import argparse

from clipgen.engine.script import add_training_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from clipgen.engine.script import run_training
    from clipgen.train.gpt import GPTTask, GPTTrainConfig

    return run_training(args, GPTTrainConfig, GPTTask, lambda cfg: cfg.model)
