"""Real DDP under torchrun: 2 CPU processes on gloo."""

import json

import pytest
import torch

from clipgen.data.shapes_shards import make_shapes
from clipgen.engine.checkpoint import latest_checkpoint, load_checkpoint
from dist_helpers import TESTS, torchrun
from test_train_vqgan import SHAPES32, tiny_overrides

SHARD_SIZE = 8


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_shapes")
    make_shapes(root / "train", 64, size=16, seed=0, shard_size=SHARD_SIZE)
    make_shapes(root / "heldout", 16, size=16, seed=1, shard_size=SHARD_SIZE)
    return root


def test_ranks_read_different_shards_and_hold_identical_weights_after_a_step(shards, tmp_path):
    overrides = [a for a in tiny_overrides(shards, tmp_path / "run", 1) if a != "--set"]
    # the GAN path too, so the discriminator's DDP is exercised, and a dead-code restart, whose
    # summed counts and broadcast codes are what could make the ranks' codebooks diverge
    overrides += ["loss.disc_start=0", "model.quantizer.restart_every=1"]
    torchrun(str(TESTS / "ddp_probe.py"), "vqgan", str(SHAPES32), str(tmp_path), *overrides)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))

    def shards_of(keys):  # shapes-zh keys are the sample index
        return {int(k) // SHARD_SIZE for k in keys}

    assert rank0["keys"] and rank1["keys"]
    assert not shards_of(rank0["keys"]) & shards_of(rank1["keys"])
    for key, value in rank0["after"].items():
        assert torch.equal(value, rank1["after"][key]), key
    for key, value in rank0["disc"].items():
        if "running" not in key and "num_batches" not in key:  # BatchNorm statistics stay per rank
            assert torch.equal(value, rank1["disc"][key]), key
    changed = [k for k in rank0["after"] if not torch.equal(rank0["after"][k], rank0["before"][k])]
    assert len(changed) > len(rank0["after"]) // 2  # a real step happened


def test_train_vqgan_script_runs_under_torchrun_and_resumes(shards, tmp_path):
    out = tmp_path / "run"
    script = str(TESTS.parent / "train_vqgan.py")
    # three ranks over two held-out shards: the third rank evaluates nothing and must still join
    # every reduction; two micro-batches per step: the first accumulates without an all-reduce
    torchrun(script, "--config", str(SHAPES32), *tiny_overrides(shards, out, 2), "--set", "run.grad_accum=2", processes=3)
    torchrun(script, "--resume", str(out), "--set", "run.max_steps=4", processes=3)
    state = load_checkpoint(latest_checkpoint(out / "checkpoints"))
    assert state["step"] == 4 and state["data"]["batches"] == 8 and state["data"]["world_size"] == 3
    assert state["data"]["positions"].shape == (3, 2, 2)  # each rank's place in its stream
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["eval/images"] for row in logged if "eval/images" in row] == [16.0, 16.0]
    assert (out / "model" / "model.safetensors").is_file()


def test_a_run_resumed_under_torchrun_ends_with_the_weights_of_one_never_stopped(shards, tmp_path):
    # two ranks: a sum of two gradients is the same in either order, so the weights must match
    # bit for bit. (With three or more, DDP's bucket rebuild at a fresh process group's first
    # step changes the order gloo adds them in: differences of ~1e-4 after a few Adam steps.)
    script = str(TESTS.parent / "train_vqgan.py")
    split, straight = tmp_path / "split", tmp_path / "straight"
    torchrun(script, "--config", str(SHAPES32), *tiny_overrides(shards, split, 2), "--set", "run.grad_accum=2")
    torchrun(script, "--resume", str(split), "--set", "run.max_steps=4")
    torchrun(script, "--config", str(SHAPES32), *tiny_overrides(shards, straight, 4), "--set", "run.grad_accum=2")
    resumed, uninterrupted = (load_checkpoint(latest_checkpoint(d / "checkpoints"))["task"] for d in (split, straight))
    for part in ("model", "disc", "ema"):
        for key, value in uninterrupted[part].items():
            assert torch.equal(value, resumed[part][key]), f"{part}.{key}"
