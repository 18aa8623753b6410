import os

import pytest

from clipgen.engine import dist


@pytest.fixture(autouse=True)
def private_environ(monkeypatch):
    """The code under test writes os.environ directly; give it a copy so nothing leaks out."""
    monkeypatch.setattr(os, "environ", os.environ.copy())


@pytest.mark.parametrize(
    "nodelist, host",
    [("gpu[03-05,07],cpu1", "gpu03"), ("node17", "node17"), ("a[1,4]", "a1"), ("n[010-012]", "n010")],
)
def test_first_host_of_a_slurm_nodelist(nodelist, host):
    assert dist._first_slurm_host(nodelist) == host


def test_srun_without_torchrun_gets_torchrun_variables(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    slurm = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_STEP_NUM_TASKS": "16", "SLURM_LOCALID": "1",
             "SLURM_JOB_NODELIST": "gpu[03-04]", "SLURM_JOB_ID": "123456"}  # fmt: skip
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    dist._env_from_slurm()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("9", "16", "1")
    assert os.environ["MASTER_ADDR"] == "gpu03"
    assert os.environ["MASTER_PORT"] == str(20000 + 123456 % 20000)


def test_torchrun_variables_win_over_slurm(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")  # a real multi-task step, so SLURM would apply
    dist._env_from_slurm()
    assert os.environ["RANK"] == "0" and os.environ["WORLD_SIZE"] == "2"


def test_single_process_needs_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    info = dist.init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)


def test_sbatch_script_without_srun_stays_a_single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "8")  # the allocation's size, but no srun step started us
    dist._env_from_slurm()
    assert "RANK" not in os.environ and "WORLD_SIZE" not in os.environ


def test_gpu_process_groups_can_reduce_cpu_tensors_too():
    assert dist.process_group_backend(use_cuda=True) == "cpu:gloo,cuda:nccl"
    assert dist.process_group_backend(use_cuda=False) == "gloo"
