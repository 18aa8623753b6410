#!/usr/bin/env python
"""Train the VQGAN stage. One process, or `torchrun --nproc_per_node=N train_vqgan.py ...`.

    python train_vqgan.py --config configs/vqgan/shapes32.yaml [--set key.path=value ...] [--resume [RUN_DIR]]
"""

import sys

from clipgen.cli import run_script
from clipgen.commands import train_vqgan

if __name__ == "__main__":
    sys.exit(run_script(train_vqgan, __doc__.splitlines()[0]))
