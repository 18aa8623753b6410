"""`clipgen train-vqgan` / `train_vqgan.py`: train the VQGAN on image shards."""

from __future__ import annotations

import argparse

from clipgen.engine.script import add_training_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from clipgen.engine.script import run_training
    from clipgen.train.vqgan import VQGANTask, VQGANTrainConfig

    return run_training(args, VQGANTrainConfig, VQGANTask, lambda cfg: cfg.model)
