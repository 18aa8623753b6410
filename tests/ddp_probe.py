"""Run under torchrun by tests/test_ddp.py: one real DDP training step of a tiny VQGAN.

Each rank writes what it read and the weights it holds afterwards to OUT/rank{r}.pt, so the
test can check that the ranks read different shards and ended the step with identical weights.
"""

import sys
from pathlib import Path

import torch

from clipgen.config import load_config
from clipgen.engine.dist import cleanup_distributed, init_distributed
from clipgen.train.vqgan import VQGANTask, VQGANTrainConfig

if __name__ == "__main__":
    config_path, out, overrides = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    cfg = load_config(VQGANTrainConfig, config_path, overrides)
    info = init_distributed("cpu")
    assert info.world_size == 2 and torch.distributed.get_backend() == "gloo"
    task = VQGANTask(cfg, info)
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    batch = next(task.train_batches(0, None))
    task.train_step([batch], step=0)
    torch.save(
        {"keys": batch["key"], "before": before, "after": task.model.state_dict(), "disc": task.disc.state_dict()},
        out / f"rank{info.rank}.pt",
    )
    cleanup_distributed()
