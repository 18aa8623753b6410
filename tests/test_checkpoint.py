import random

import numpy as np
import pytest
import torch

from clipgen.engine import checkpoint as ckpt
from clipgen.engine.atomic import atomic_write


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    state = ckpt.capture_rng_state()
    path = ckpt.save_checkpoint(tmp_path, 7, {"rng": state, "step": 7})
    expected = (random.random(), random.gauss(0, 1), np.random.rand(), torch.rand(1).item())
    ckpt.restore_rng_state(ckpt.load_checkpoint(path)["rng"])
    assert (random.random(), random.gauss(0, 1), np.random.rand(), torch.rand(1).item()) == expected


def test_keeps_the_newest_and_finds_the_latest(tmp_path):
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, {"step": step}, keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))["step"] == 3


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, 1, {"w": torch.zeros(1000)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable checkpoint: truncated"):
        ckpt.load_checkpoint(path)
