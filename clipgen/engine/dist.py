"""Process-group set-up for one process, torchrun, or SLURM.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT. Under a plain `srun`
(one task per GPU, no torchrun) only SLURM's variables exist, so they are translated; the master
address is the first host of the job's node list, and the port is derived from the job id so
concurrent jobs on one node do not collide. NCCL is used on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import datetime
import os
import re
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

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


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched with several processes; pick this rank's device."""
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
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend=process_group_backend(use_cuda),
            timeout=datetime.timedelta(minutes=30),
            **({"device_id": torch_device} if use_cuda else {}),
        )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


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
