"""Faults a days-long run meets: unreadable checkpoints, a second process, kill -9 inside a
save, a full disk. Each must cost no work and need no person to delete a file."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from clipgen.cli import main as clipgen_main
from clipgen.engine import checkpoint as ckpt
from clipgen.engine.dist import DistInfo
from clipgen.engine.run_lock import RunDirBusyError
from clipgen.engine.trainer import RunConfig, prepare_run_dir
from gpt_helpers import gpt_args, make_stages


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return make_stages(tmp_path_factory.mktemp("fault_stages"))


def spoil(checkpoints, step: int, how: str) -> None:
    path = ckpt.checkpoint_path(checkpoints, step)
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(4096))
    elif how == "unsafe pickle":  # what weights_only loading refuses: it would run code
        torch.save({"step": step, "payload": subprocess.CompletedProcess(["true"], 0)}, path)


def test_unreadable_newest_checkpoints_fall_back_to_the_newest_good_one(stages, tmp_path, caplog):
    out = tmp_path / "gpt"
    assert clipgen_main(gpt_args(stages, out, 4, "run.ckpt_every=1", "run.keep_checkpoints=10")) == 0
    for step in (5, 6):  # newer than any real one
        ckpt.checkpoint_path(out / "checkpoints", 1).parent.joinpath(f"step_{step:08d}.pt").write_bytes(b"x")
    for step, how in ((6, "unsafe pickle"), (5, "garbage"), (4, "truncated"), (3, "empty")):
        spoil(out / "checkpoints", step, how)
    with caplog.at_level(logging.INFO, logger="clipgen.train"):
        assert clipgen_main(["train-gpt", "--resume", str(out), "--set", "run.max_steps=7"]) == 0
    text = caplog.text
    assert "resumed from" in text and "step_00000002.pt at step 2" in text
    for step, reason in ((6, "safe loading refuses"), (5, "step_00000005.pt"), (4, "truncated"), (3, "empty file")):
        assert reason in text and f"skipping {out / 'checkpoints'}/step_{step:08d}.pt" in text
    assert "weights_only=False" not in text and "trusted source" not in text
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(out / "checkpoints"))["step"] == 7


def test_with_no_readable_checkpoint_resuming_says_so(tmp_path):
    for step in (1, 2):
        ckpt.save_checkpoint(tmp_path, step, {"step": step})
        spoil(tmp_path, step, "empty")
    with pytest.raises(ckpt.UnreadableCheckpointError, match=r"no readable checkpoint in .*step_00000002.pt.*empty"):
        ckpt.load_latest_readable(tmp_path)


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from clipgen.engine.run_lock import lock_run_dir
    lock_run_dir(sys.argv[1])
    print("locked", flush=True)
    time.sleep(120)
""")


def test_a_second_process_on_a_run_dir_is_refused_until_the_first_dies(tmp_path):
    run = RunConfig(out_dir=str(tmp_path / "run"))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, run.out_dir], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusyError, match=rf"in use by another training process \(pid {holder.pid} on "):
            prepare_run_dir(run, run, DistInfo(), resume=True)
        assert not (tmp_path / "run" / "config.yaml").exists()  # refused before touching anything
    finally:
        holder.kill()  # kill -9: no clean-up runs, the kernel drops the lock
        holder.wait()
    prepare_run_dir(run, run, DistInfo(), resume=True)
    assert (tmp_path / "run" / "config.yaml").is_file()


KILLED_INSIDE_A_SAVE = textwrap.dedent("""
    import sys, time
    from clipgen.engine.atomic import atomic_write
    with atomic_write(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half a checkpoint")
        print("writing", flush=True)
        time.sleep(120)
""")


def test_what_a_kill_inside_a_save_leaves_is_removed_at_start(tmp_path, caplog):
    run = RunConfig(out_dir=str(tmp_path / "run"))
    good = ckpt.save_checkpoint(tmp_path / "run" / "checkpoints", 2, {"step": 2})
    writer = subprocess.Popen([sys.executable, "-c", KILLED_INSIDE_A_SAVE, str(ckpt.checkpoint_path(good.parent, 4))],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    (leftover,) = good.parent.glob(".step_00000004.pt.*.tmp")
    with caplog.at_level(logging.INFO, logger="clipgen.train"):
        prepare_run_dir(run, run, DistInfo(), resume=True)
    assert not leftover.exists() and f"removed {leftover}" in caplog.text
    assert sorted(p.name for p in good.parent.iterdir()) == ["step_00000002.pt"]


def test_a_full_disk_during_a_save_is_named_and_the_older_checkpoints_stay(tmp_path, monkeypatch):
    for step in (1, 2):
        ckpt.save_checkpoint(tmp_path, step, {"step": step, "w": torch.ones(10)})

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):  # the kernel's own ENOSPC
        return open("/dev/full", mode, *args, **kwargs) if "w" in mode else open(path, mode, *args, **kwargs)

    monkeypatch.setattr(ckpt, "open", open_on_a_full_disk, raising=False)
    with pytest.raises(ckpt.CheckpointWriteError) as caught:
        ckpt.save_checkpoint(tmp_path, 3, {"step": 3, "w": torch.ones(100_000)})
    message = str(caught.value)
    assert message.startswith("the disk is full: cannot write ") and "step_00000003.pt" in message
    assert "previous checkpoints are intact (step_00000001.pt, step_00000002.pt)" in message
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001.pt", "step_00000002.pt"]
    assert ckpt.load_checkpoint(tmp_path / "step_00000002.pt")["step"] == 2
