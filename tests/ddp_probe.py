"""Run under torchrun by the DDP tests: one real DDP training step of a tiny model.

`ddp_probe.py STAGE CONFIG OUT [OVERRIDES...]`, STAGE `vqgan` (tests/test_ddp.py) or `gpt-clip-loss`
(a condition transformer with the CLIP loss on, tests/test_clip_loss_ddp.py). Each rank writes
what it read and the weights it holds before and after to OUT/rank{r}.pt, so the test can check
that the ranks read different data and ended the step with identical weights.
"""

import sys
from pathlib import Path

import torch

from clipgen.config import load_config
from clipgen.engine.dist import cleanup_distributed, init_distributed


def vqgan_task(config_path, overrides, info):
    from clipgen.train.vqgan import VQGANTask, VQGANTrainConfig

    task = VQGANTask(load_config(VQGANTrainConfig, config_path, overrides), info)
    return task, lambda batch, logged: {"keys": batch["key"], "disc": task.disc.state_dict()}


def gpt_clip_loss_task(config_path, overrides, info):
    from clipgen.train.gpt import GPTTask, GPTTrainConfig

    task = GPTTask(load_config(GPTTrainConfig, config_path, overrides), info)
    frozen = list(task.clip_loss.vqgan.parameters()) + list(task.clip.model.parameters())
    return task, lambda batch, logged: {
        "index": batch["index"], "logged": logged,
        "frozen_grads": any(p.grad is not None or p.requires_grad for p in frozen),
    }  # fmt: skip


STAGES = {"vqgan": vqgan_task, "gpt-clip-loss": gpt_clip_loss_task}

if __name__ == "__main__":
    stage, config_path, out, overrides = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
    info = init_distributed("cpu")
    assert info.world_size == 2 and torch.distributed.get_backend() == "gloo"
    task, extras = STAGES[stage](config_path, overrides, info)
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    batch = next(task.train_batches(0, None))
    logged = task.train_step([batch], step=0)
    torch.save({"before": before, "after": task.model.state_dict(), **extras(batch, logged)}, out / f"rank{info.rank}.pt")
    cleanup_distributed()
