"""A dead rank under torchrun: with restarts left the job resumes from its checkpoint, without it ends.

Launched as a cluster user would, with the c10d rendezvous (`--rdzv-backend=c10d
--rdzv-endpoint=HOST:PORT`), 2 CPU workers on gloo. A worker is killed with SIGKILL once the run
has a checkpoint; the workers are found as the children of the torchrun process, by /proc.
"""

import datetime
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from clipgen.engine import dist as cg_dist
from clipgen.engine.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from gpt_helpers import gpt_args, make_stages

ROOT = Path(__file__).parent.parent
STEPS = 300  # long enough that the kill lands mid-training (the first checkpoint is at step 5)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc")


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return make_stages(tmp_path_factory.mktemp("elastic_stages"))


def workers_of(pid: int) -> dict[int, int]:
    """{local rank: pid} of the processes whose parent is `pid` (torchrun's workers)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != pid or fields[0] == "Z":
                continue
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        for item in environ:
            if item.startswith(b"LOCAL_RANK="):
                found[int(item.split(b"=")[1])] = int(stat.parent.name)
    return found


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


class Torchrun:
    """torchrun of train_gpt.py in the background, its output in a file, killed at the end."""

    def __init__(self, stages: Path, out: Path, max_restarts: int):
        self.out, self.log = out, out.parent / f"{out.name}.log"
        args = gpt_args(stages, out, STEPS, "run.eval_every=0", "run.image_every=0", "run.ckpt_every=5",
                        "run.log_every=50", "run.device=cpu")[1:]  # fmt: skip
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               f"--max-restarts={max_restarts}", "--rdzv-backend=c10d",
               f"--rdzv-endpoint=127.0.0.1:{cg_dist.free_port()}", str(ROOT / "train_gpt.py"), *args]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.seen: set[int] = set()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_worker_once_checkpointed(self, local_rank: int, within: float = 120) -> tuple[int, dict[int, int]]:
        """SIGKILL one worker once a checkpoint exists; returns its pid and the workers then."""
        deadline = time.monotonic() + within
        while not list_checkpoints(self.out / "checkpoints"):
            assert self.proc.poll() is None, self.output()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint in time:\n" + self.output()[-3000:]
            time.sleep(0.1)
        workers = workers_of(self.proc.pid)
        assert sorted(workers) == [0, 1], workers
        self.seen |= set(workers.values())
        os.kill(workers[local_rank], signal.SIGKILL)
        return workers[local_rank], workers

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"torchrun still running {timeout} s after the kill:\n" + self.output()[-3000:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.seen |= set(workers_of(self.proc.pid).values())
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in self.seen:  # the workers run in sessions of their own
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def launch():
    runs = []

    def start(*args, **kwargs):
        runs.append(Torchrun(*args, **kwargs))
        return runs[-1]

    yield start
    for run in runs:
        run.close()


def test_a_killed_rank_is_restarted_and_the_run_resumes_from_its_checkpoint(stages, tmp_path, launch):
    job = launch(stages, tmp_path / "run", max_restarts=1)
    job.kill_worker_once_checkpointed(local_rank=1)
    assert job.wait(timeout=150) == 0, job.output()[-4000:]
    text = job.output()
    assert "torchrun restart 1 (of at most 1): continuing" in text, text[-4000:]
    resumed = re.search(r"resumed from \S+step_(\d+)\.pt at step (\d+)", text)
    assert resumed and int(resumed.group(2)) >= 5, text[-4000:]
    state = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert state["step"] == STEPS and state["data"]["world_size"] == 2
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_with_no_restarts_left_the_job_ends_soon_after_a_rank_dies(stages, tmp_path, launch):
    job = launch(stages, tmp_path / "run", max_restarts=0)
    _, workers = job.kill_worker_once_checkpointed(local_rank=0)
    killed = time.monotonic()
    assert job.wait(timeout=60) != 0
    assert time.monotonic() - killed < 60
    assert not alive(workers[1]), "the surviving worker outlived torchrun"
    assert latest_checkpoint(tmp_path / "run" / "checkpoints") is not None


def test_a_restarted_round_never_takes_the_token_of_a_dead_round():
    """The agent's store keeps a dead round's keys (its leader, its answers); a new round's rank
    that reads them before the new rank 0 has started must wait for it, not join the dead round."""
    timeout = datetime.timedelta(seconds=20)
    server = dist.TCPStore("127.0.0.1", 0, None, True, timeout)
    tokens: dict[int, str] = {}

    def join(rank: int) -> threading.Thread:
        def agree():  # each worker has a client of its own, as in a real run
            store = dist.PrefixStore("clipgen/none", dist.TCPStore("127.0.0.1", server.port, timeout=timeout))
            tokens[rank] = cg_dist._agree_on_round(store, rank, 2, timeout)

        thread = threading.Thread(target=agree)
        thread.start()
        return thread

    for thread in [join(0), join(1)]:  # a first round, which then dies
        thread.join(timeout=20)
    dead = tokens[0]
    assert tokens[1] == dead
    tokens.clear()
    late = join(1)  # the next round's rank 1 starts first and reads the dead round's leader
    time.sleep(1.0)
    assert 1 not in tokens, "rank 1 joined the dead round"
    join(0).join(timeout=20)
    late.join(timeout=20)
    assert tokens[1] == tokens[0] != dead
