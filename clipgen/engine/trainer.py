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

from clipgen.config import ConfigError, from_dict, save_config, to_dict
from clipgen.engine import checkpoint as ckpt
from clipgen.engine.dist import DistInfo, all_reduce_sum, barrier
from clipgen.engine.logging import RunLogger

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
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    compile: bool = False  # torch.compile the model


class Task(Protocol):
    """What a stage gives the loop."""

    def train_batches(self, skip_batches: int) -> Iterator[dict[str, Any]]: ...

    def train_step(self, micro_batches: list[dict[str, Any]], step: int) -> dict[str, float]: ...

    def evaluate(self, step: int) -> dict[str, float]: ...

    def log_images(self, logger: RunLogger, step: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...  # called on every rank: may use collectives

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def export(self, run_dir: Path) -> None: ...


def autocast_dtype(run: RunConfig, device: torch.device) -> torch.dtype | None:
    if run.precision == "bf16" or (run.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """Autocast to `dtype` on `device`, or nothing when `dtype` is None (full precision)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def prepare_run_dir(config: Any, run: RunConfig, info: DistInfo, resume: bool) -> Path:
    """Create the run dir and save the resolved config; refuse to clobber a finished run."""
    run_dir = Path(run.out_dir)
    # checked on every rank, so that all of them stop rather than wait for rank 0 at a barrier
    if not resume and ckpt.latest_checkpoint(run_dir / "checkpoints"):
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another run.out_dir")
    if info.is_main:
        saved = run_dir / "config.yaml"
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, saved)
    barrier()
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
        if self.info.is_main:
            payload = {
                "step": self.step,
                "data": {"batches": self.step * self.run.grad_accum, **self._data_layout()},
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

    def resume(self) -> int:
        """Load the newest checkpoint, if any; returns the number of batches already consumed."""
        path = ckpt.latest_checkpoint(self.ckpt_dir)
        if path is None:
            log.info("no checkpoint in %s: starting from scratch", self.ckpt_dir)
            return 0
        state = ckpt.load_checkpoint(path)
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
        return int(state["data"]["batches"])

    # --- the loop --------------------------------------------------------------------------------

    def _out_of_time(self, started: float) -> bool:
        if self.run.max_minutes <= 0:
            return False
        # rank 0's clock decides, so every rank stops at the same step
        flag = torch.tensor([float(self.info.is_main and time.time() - started > 60 * self.run.max_minutes)])
        return all_reduce_sum(flag).item() > 0

    def fit(self, resume: bool = False) -> dict[str, float]:
        run = self.run
        skip = self.resume() if resume else 0
        logger = RunLogger(self.run_dir, self.info.is_main, run.max_steps, self.step)
        batches = self.task.train_batches(skip_batches=skip)
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
        finally:
            logger.close()
        if self.info.is_main:
            self.task.export(self.run_dir)
        barrier()
        return {"step": self.step, "minutes": (time.time() - started) / 60, **last_eval}
