"""Process-group set-up for one process, torchrun, or SLURM.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT. Under a plain `srun`
(one task per GPU, no torchrun) only SLURM's variables exist, so they are translated; the master
address is the first host of the job's node list, and the port is derived from the job id so
concurrent jobs on one node do not collide. NCCL is used on GPUs, gloo on CPUs.

Elastic training: a rank that dies (a kill, an OOM, a lost GPU) is replaced when torchrun is given
restarts; the agent stops the survivors and starts a new round of workers with the same command
line, which continue the run from its newest checkpoint:

    torchrun --nnodes=1 --nproc_per_node=8 --max-restarts=3 \
        --rdzv-backend=c10d --rdzv-endpoint=$HOST:29500 train_gpt.py --config ... --set run.out_dir=runs/x

(`--standalone` on one node, and `--master-addr/--master-port` work too; on several nodes give
each the same `--rdzv-endpoint` and `--rdzv-id`). torchrun's agent keeps one key-value store for
the whole job and points every round's workers at it (TORCHELASTIC_USE_AGENT_STORE=True). The
`env://` start of `init_process_group` writes its keys there under fixed names, so a restarted
round would read the dead round's gloo/NCCL addresses and dial them: a refused connection at once,
or a hang in connect. Here the ranks of each round first agree on a fresh namespace in that store
(`_agree_on_round`), and the process group lives under it. With no restarts left, the agent stops
the other workers as soon as one dies, and torchrun exits non-zero.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger("clipgen.dist")

# How long a collective may wait for the slowest rank before it fails: generous, because on a GPU
# run rank 0 may evaluate or write a large checkpoint for many minutes while the others wait at a
# barrier. Nothing in a restart waits for it: torchrun's agent stops the survivors of a dead rank.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    restart_count: int = 0  # torchrun's restarts of the worker group so far (0: the first round)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _first_slurm_host(nodelist: str) -> str:
    """'gpu[03-05,07],cpu1' -> 'gpu03' without calling scontrol."""
    match = re.match(r"([^\[,]+)(?:\[([^\]]+)\])?", nodelist)
    if not match:
        return nodelist
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def _env_from_slurm() -> None:
    """Fill torchrun's variables from SLURM's when launched by srun without torchrun."""
    if "RANK" in os.environ or "SLURM_PROCID" not in os.environ:
        return
    # SLURM_STEP_NUM_TASKS exists only inside an `srun` step; SLURM_NTASKS is also set for a
    # batch script run without srun, where waiting for N-1 peers that never start would hang.
    ntasks = int(os.environ.get("SLURM_STEP_NUM_TASKS", "1"))
    if ntasks <= 1:
        return
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = str(ntasks)
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    os.environ.setdefault("MASTER_ADDR", _first_slurm_host(os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1")))
    os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))


def process_group_backend(use_cuda: bool) -> str:
    # NCCL reduces only CUDA tensors; small CPU-side statistics (eval sums, the time-limit flag)
    # go through gloo in the same process group.
    return "cpu:gloo,cuda:nccl" if use_cuda else "gloo"


def init_distributed(device: str = "auto", timeout: datetime.timedelta = COLLECTIVE_TIMEOUT) -> DistInfo:
    """Join the process group when launched with several processes; pick this rank's device.

    `timeout` bounds a collective (and the wait for the other ranks to start); a restart after a
    dead rank does not wait for it.
    """
    _env_from_slurm()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        # modulo: with --gpus-per-task=1 SLURM shows each task a single device, numbered 0
        device_index = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(device_index)
        torch_device = torch.device("cuda", device_index)
    else:
        torch_device = torch.device("cpu")
    job_store = _agent_job_store(timeout)
    if world_size > 1 and not dist.is_initialized():
        if job_store is not None:  # torchrun: the keys of this round, not of the dead ones
            round_store = _round_namespace(job_store, rank, world_size, timeout)
            where = {"store": round_store, "rank": rank, "world_size": world_size}
        else:
            where = {}  # env:// (MASTER_ADDR/MASTER_PORT): rank 0 hosts a new store
        dist.init_process_group(
            backend=process_group_backend(use_cuda),
            timeout=timeout,
            **where,
            **({"device_id": torch_device} if use_cuda else {}),
        )
    restart_count = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device, restart_count=restart_count)


# --- torchrun's store: one for the whole job, shared by all its rounds ----------------------------

_job_store: dist.Store | None = None  # the agent's store, prefixed with this job's id; None elsewhere

_POLL_SECONDS = 0.2


def _agent_job_store(timeout: datetime.timedelta) -> dist.Store | None:
    """A client of the store torchrun's agent serves at MASTER_ADDR:MASTER_PORT, if it serves one."""
    global _job_store
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None  # no agent store (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1): rank 0 hosts a new one per round
    if _job_store is None:
        client = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout)
        _job_store = dist.PrefixStore(f"clipgen/{os.environ.get('TORCHELASTIC_RUN_ID', 'none')}", client)
    return _job_store


def _round_namespace(job_store: dist.Store, rank: int, world_size: int, timeout: datetime.timedelta) -> dist.Store:
    """The part of the agent's store that only this round's workers use."""
    token = _agree_on_round(job_store, rank, world_size, timeout)
    log.debug("rank %d joins round %s (restart %s)", rank, token, os.environ.get("TORCHELASTIC_RESTART_COUNT"))
    return dist.PrefixStore(f"round/{token}/pg", job_store)


def _agree_on_round(store: dist.Store, rank: int, world_size: int, timeout: datetime.timedelta) -> str:
    """Rank 0 names the round with a fresh token; every other rank learns it, never a dead round's.

    The store still holds the keys of earlier rounds, so reading "the leader's token" alone may give
    a token whose rank 0 is dead. A rank therefore posts a fresh nonce of its own under the token it
    read, and takes the token only once rank 0 has answered that nonce, which a dead rank 0 never
    does; it then reads the token again, until this round's rank 0 has written it. (The restart count
    cannot name the round: on several nodes each agent counts only its own workers' failures.)
    """
    deadline = time.monotonic() + timeout.total_seconds()
    if rank == 0:
        token = uuid.uuid4().hex
        store.set("round/leader", token)
        acks = [f"round/{token}/ack/{r}" for r in range(1, world_size)]
        store.wait(acks, timeout)
        for key in acks:
            store.set(f"round/confirmed/{store.get(key).decode()}", token)
        return token
    nonce = uuid.uuid4().hex
    posted = None
    while True:
        token = store.get("round/leader").decode()  # blocks (up to the timeout) until a rank 0 wrote one
        if token != posted:
            store.set(f"round/{token}/ack/{rank}", nonce)
            posted = token
        if store.check([f"round/confirmed/{nonce}"]):
            return store.get(f"round/confirmed/{nonce}").decode()
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: rank 0 of this round did not answer within {timeout}")
        time.sleep(_POLL_SECONDS)


def set_job_value(key: str, value: str) -> None:
    """Remember `value` for the later rounds of this torchrun job (nothing outside torchrun)."""
    if _job_store is not None:
        _job_store.set(f"job/{key}", value)


def get_job_value(key: str) -> str | None:
    """What an earlier round of this torchrun job remembered under `key`; None if nothing."""
    if _job_store is None or not _job_store.check([f"job/{key}"]):
        return None
    return _job_store.get(f"job/{key}").decode()


def cleanup_distributed() -> None:
    global _job_store
    if dist.is_initialized():
        dist.destroy_process_group()
    _job_store = None


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place when distributed); a no-op in one process."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def free_port() -> int:
    """A free TCP port on this host (for tests that launch torchrun)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
