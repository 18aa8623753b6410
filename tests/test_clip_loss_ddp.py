"""The CLIP loss under real DDP (torchrun, 2 CPU processes on gloo): the frozen VQGAN and CLIP stay
outside DDP on every rank, and the ranks end the step with identical transformer weights."""

import pytest
import torch

from gpt_helpers import CONFIG, gpt_settings, make_stages
from dist_helpers import TESTS, torchrun


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return make_stages(tmp_path_factory.mktemp("clip_loss_ddp_stages"))


def test_clip_loss_step_under_torchrun_keeps_the_ranks_identical(stages, tmp_path):
    settings = gpt_settings(stages, tmp_path / "run", 1, "loss.clip_weight=1", "condition.cond_dropout=0.25")
    torchrun(str(TESTS / "ddp_probe.py"), "gpt-clip-loss", str(CONFIG), str(tmp_path), *settings)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(rank0["index"], rank1["index"])  # each rank trained on its own images
    for rank in (rank0, rank1):
        assert 0 < rank["logged"]["clip_loss"] <= 2 and not rank["frozen_grads"]
    for key, value in rank0["after"].items():
        assert torch.equal(value, rank1["after"][key]), key
    changed = [k for k in rank0["after"] if not torch.equal(rank0["after"][k], rank0["before"][k])]
    assert len(changed) > len(rank0["after"]) // 2  # a real step happened
