"""The training loop every stage shares: run dir, resume, steps, logging, eval, checkpoints.

A stage supplies a `Task` (see `clipgen/train/`): it builds its models and data, runs one
optimizer step over a list of micro-batches, evaluates, and exports its model. The loop owns
everything else, so torchrun/SLURM, resume, EMA, tqdm, TensorBoard and atomic checkpoints behave
the same in every stage.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol

import torch

from clipgen.config import ConfigError, check_fields, from_dict, save_config, to_dict
from clipgen.engine import checkpoint as ckpt
from clipgen.engine.atomic import remove_leftover_temporaries
from clipgen.engine.dist import DistInfo, all_reduce_sum, barrier
from clipgen.engine.logging import RunLogger
from clipgen.engine.run_lock import RunDirBusyError, lock_run_dir, unlock_run_dir

log = logging.getLogger("clipgen.train")


@dataclass
class RunConfig:
    out_dir: str = "runs/vqgan"
    seed: int = 0
    max_steps: int = 1000
    max_minutes: float = 0.0  # stop cleanly (checkpoint, eval, export) after this long; 0: no limit
    batch_size: int = 32  # per rank and micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    log_every: int = 10
    image_every: int = 500
    eval_every: int = 500  # 0: only at the end
    ckpt_every: int = 500  # 0: only at the end
    keep_checkpoints: int = 2
    ema_decay: float = 0.999  # 0 turns EMA off
    device: str = "auto"  # auto | cpu | cuda
    # auto: bf16 autocast where the hardware multiplies bf16 natively (a GPU, a CPU with AMX or
    # AVX512-BF16), else fp32
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False  # torch.compile the model

    def __post_init__(self):
        # caught when the config is read, not after the run (max_steps 0 would export an untrained model)
        check_fields(self, [
            ("out_dir", bool(self.out_dir.strip()), "a directory"),
            ("seed", self.seed >= 0, "≥ 0"),
            ("max_steps", self.max_steps >= 1, "≥ 1"),
            ("max_minutes", 0 <= self.max_minutes < float("inf"), "a finite number ≥ 0 (0: no limit)"),
            *((name, getattr(self, name) >= 1, "≥ 1") for name in ("batch_size", "grad_accum", "log_every")),
            *((name, getattr(self, name) >= 0, "≥ 0 (0: only at the end)") for name in ("eval_every", "ckpt_every")),
            ("image_every", self.image_every >= 0, "≥ 0 (0: never)"),
            ("keep_checkpoints", self.keep_checkpoints >= 0, "≥ 0 (0: keep all)"),
            ("ema_decay", 0 <= self.ema_decay < 1, "in [0, 1) (0: no EMA)"),
        ])  # fmt: skip


class Task(Protocol):
    """What a stage gives the loop."""

    # the batches from where the run stands: `batches_done` so far, and this rank's data position
    # as `data_position` gave it at the last checkpoint (None: at the start, or not recorded)
    def train_batches(self, batches_done: int, position: torch.Tensor | None) -> Iterator[dict[str, Any]]: ...

    # how far this rank's stream is consumed, as a fixed-shape int64 tensor (the same shape on
    # every rank); None when the batches are a function of their number alone
    def data_position(self) -> torch.Tensor | None: ...

    def train_step(self, micro_batches: list[dict[str, Any]], step: int) -> dict[str, float]: ...

    def evaluate(self, step: int) -> dict[str, float]: ...

    def log_images(self, logger: RunLogger, step: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...  # called on every rank: may use collectives

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def export(self, run_dir: Path) -> None: ...


def autocast_dtype(run: RunConfig, device: torch.device) -> torch.dtype | None:
    if run.precision == "bf16" or (run.precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 products run natively on `device`: a GPU (at full speed from Ampere on), or a
    CPU with bf16 instructions, AMX tiles (Intel Sapphire Rapids on) or AVX512-BF16 (AMD Zen 4 on,
    Intel Cooper Lake). There bf16 autocast made the condition transformer's step 1.3x faster on
    two threads (AMX and AVX512-BF16 alike) and 1.4-1.5x on one (BENCHMARKS.md, "Mixed
    precision"); a CPU with neither (AVX2 only) would emulate bf16, slower than float32."""
    if device.type != "cpu":
        return device.type == "cuda"
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("amx_tile") or capabilities.get("avx512_bf16"))


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """Autocast to `dtype` on `device`, or nothing when `dtype` is None (full precision)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _on_any_rank(flag: bool) -> bool:
    return all_reduce_sum(torch.tensor([float(flag)])).item() > 0


def prepare_run_dir(config: Any, run: RunConfig, info: DistInfo, resume: bool) -> Path:
    """Lock the run dir (rank 0), refuse to clobber a finished run, clear what killed writes left,
    and save the resolved config. `Trainer.fit` releases the lock when training ends."""
    run_dir = Path(run.out_dir)
    busy = ""
    if info.is_main:
        try:
            lock_run_dir(run_dir)
        except RunDirBusyError as err:
            busy = str(err)
    # every rank learns rank 0's answer, so that none waits at a barrier for a rank that stopped
    if _on_any_rank(bool(busy)):
        raise RunDirBusyError(busy or f"{run_dir} is in use by another training process (rank 0 could not lock it)")
    try:
        # checked on every rank, so that all of them stop rather than wait for rank 0 at a barrier
        if not resume and ckpt.latest_checkpoint(run_dir / "checkpoints"):
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another run.out_dir")
        if info.is_main:
            for leftover in remove_leftover_temporaries(run_dir):
                log.info("removed %s, left by a write that was interrupted", leftover)
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, run_dir / "config.yaml")
        barrier()
    except BaseException:
        unlock_run_dir(run_dir)
        raise
    return run_dir


def _check_same_model(saved: dict[str, Any], model_config: Any, path: Path) -> None:
    current = to_dict(model_config)
    try:  # fields added to the config since the checkpoint was written take their defaults
        saved = to_dict(from_dict(type(model_config), saved))
    except ConfigError as err:
        raise ConfigError(f"{path} was written with another model config: {err}") from err
    if saved != current:
        diffs = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ConfigError(f"{path} was written with another model config (differs in: {', '.join(diffs)})")


class Trainer:
    def __init__(self, run: RunConfig, task: Task, info: DistInfo, model_config: Any):
        self.run, self.task, self.info = run, task, info
        self.model_config = model_config
        self.run_dir = Path(run.out_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.step = 0

    # --- checkpoints -----------------------------------------------------------------------------

    def save(self) -> None:
        # every rank builds the state (a task may sum statistics across ranks); rank 0 writes
        task_state = self.task.state_dict()
        data = {"batches": self.step * self.run.grad_accum, **self._data_layout()}
        position = self.task.data_position()
        if position is not None:
            data["positions"] = self._gather_positions(position)
        if self.info.is_main:
            payload = {
                "step": self.step,
                "data": data,
                "model_config": to_dict(self.model_config),
                "task": task_state,
                "rng": ckpt.capture_rng_state(),
            }
            path = ckpt.save_checkpoint(self.ckpt_dir, self.step, payload, self.run.keep_checkpoints)
            log.info("saved %s", path)
        barrier()

    def _data_layout(self) -> dict[str, int]:
        """What the batch sequence depends on besides the seed: replaying it needs the same."""
        return {"world_size": self.info.world_size, "batch_size": self.run.batch_size}

    def _gather_positions(self, position: torch.Tensor) -> torch.Tensor:
        """Every rank's data position, [world_size, ...]: one sum of rows that are zero elsewhere."""
        rows = torch.zeros((self.info.world_size, *position.shape), dtype=torch.int64)
        rows[self.info.rank] = position
        return all_reduce_sum(rows)

    def resume(self) -> tuple[int, torch.Tensor | None]:
        """Load the newest readable checkpoint, if any; returns the number of batches already
        consumed and this rank's data position (None when there is none to continue from)."""
        found = ckpt.load_latest_readable(self.ckpt_dir)
        if found is None:
            log.info("no checkpoint in %s: starting from scratch", self.ckpt_dir)
            return 0, None
        path, state = found
        _check_same_model(state["model_config"], self.model_config, path)
        saved_layout = {k: state["data"].get(k) for k in self._data_layout()}
        if saved_layout != self._data_layout():
            log.warning(
                "resuming with %s instead of %s: training continues, but not on the batch sequence "
                "the interrupted run would have seen", self._data_layout(), saved_layout,
            )  # fmt: skip
        self.task.load_state_dict(state["task"])
        self.step = int(state["step"])
        if self.info.is_main:
            ckpt.restore_rng_state(state["rng"])
        else:  # only rank 0's RNG is saved: rank 0 makes every random choice that is shared
            torch.manual_seed(self.run.seed + self.info.rank + self.step)
        log.info("resumed from %s at step %d", path, self.step)
        positions = state["data"].get("positions")
        same_ranks = positions is not None and len(positions) == self.info.world_size
        return int(state["data"]["batches"]), positions[self.info.rank] if same_ranks else None

    # --- the loop --------------------------------------------------------------------------------

    def _out_of_time(self, started: float) -> bool:
        if self.run.max_minutes <= 0:
            return False
        # rank 0's clock decides, so every rank stops at the same step
        flag = torch.tensor([float(self.info.is_main and time.time() - started > 60 * self.run.max_minutes)])
        return all_reduce_sum(flag).item() > 0

    def fit(self, resume: bool = False) -> dict[str, float]:
        try:
            return self._fit(resume)
        finally:
            if self.info.is_main:  # the lock prepare_run_dir took
                unlock_run_dir(self.run_dir)

    def _fit(self, resume: bool) -> dict[str, float]:
        run = self.run
        batches_done, position = self.resume() if resume else (0, None)
        logger = RunLogger(self.run_dir, self.info.is_main, run.max_steps, self.step)
        batches = self.task.train_batches(batches_done, position)
        started, last_eval = time.time(), {}
        try:
            while self.step < run.max_steps:
                micro = [next(batches) for _ in range(run.grad_accum)]
                metrics = self.task.train_step(micro, self.step)
                self.step += 1
                logger.progress(1, metrics)
                if self.step % run.log_every == 0:
                    logger.scalars(self.step, metrics)
                if run.image_every and self.step % run.image_every == 0:
                    self.task.log_images(logger, self.step)
                stopping = self.step == run.max_steps or self._out_of_time(started)
                if stopping or (run.eval_every and self.step % run.eval_every == 0):
                    last_eval = self.task.evaluate(self.step)
                    logger.scalars(self.step, last_eval, prefix="eval")
                    log.info("step %d eval: %s", self.step, {k: round(v, 4) for k, v in last_eval.items()})
                if stopping or (run.ckpt_every and self.step % run.ckpt_every == 0):
                    self.save()
                if stopping:
                    break
            if not last_eval:  # resumed a run that had already finished: report it anyway
                last_eval = self.task.evaluate(self.step)
            if self.info.is_main:
                self.task.export(self.run_dir)
            barrier()
        finally:
            logger.close()
        return {"step": self.step, "minutes": (time.time() - started) / 60, **last_eval}
