#!/usr/bin/env python
"""Train the VQGAN stage. One process, or `torchrun --nproc_per_node=N train_vqgan.py ...`.

    python train_vqgan.py --config configs/vqgan/shapes32.yaml [--set key.path=value ...] [--resume [RUN_DIR]]
"""

import argparse
import sys

from clipgen.commands import train_vqgan

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train_vqgan.add_arguments(parser)
    sys.exit(train_vqgan.run(parser.parse_args()))
