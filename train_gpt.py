#!/usr/bin/env python
"""Train the condition transformer on token shards. One process, or `torchrun --nproc_per_node=N train_gpt.py ...`.

    python train_gpt.py --config configs/gpt/shapes32.yaml [--set key.path=value ...] [--resume [RUN_DIR]]
"""

import argparse
import sys

from clipgen.commands import train_gpt

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train_gpt.add_arguments(parser)
    sys.exit(train_gpt.run(parser.parse_args()))
