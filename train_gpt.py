#!/usr/bin/env python
"""Train the condition transformer on token shards. One process, or `torchrun --nproc_per_node=N train_gpt.py ...`.

    python train_gpt.py --config configs/gpt/shapes32.yaml [--set key.path=value ...] [--resume [RUN_DIR]]
"""

import sys

from clipgen.cli import run_script
from clipgen.commands import train_gpt

if __name__ == "__main__":
    sys.exit(run_script(train_gpt, __doc__.splitlines()[0]))
