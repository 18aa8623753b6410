"""The command line every training script shares: --config, --set, --resume.

    python train_vqgan.py --config configs/vqgan/shapes32.yaml --set run.max_steps=500
    torchrun --nproc_per_node=8 train_vqgan.py --config ... --set run.out_dir=runs/x
    python train_vqgan.py --resume runs/x            # continue from the newest checkpoint
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from clipgen.config import ConfigError, load_config

log = logging.getLogger("clipgen")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (see configs/)")
    parser.add_argument(
        "--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
        help="override a config value by its dotted path, e.g. optim.lr=1e-4 (several may follow one --set; --set repeats)",
    )  # fmt: skip
    parser.add_argument(
        "--resume", nargs="?", const=True, default=None, metavar="RUN_DIR",
        help="continue from the newest checkpoint (of RUN_DIR, whose config.yaml is then the config)",
    )  # fmt: skip


def resolve_config(config_cls: type, args: argparse.Namespace) -> Any:
    path = args.config
    overrides = list(args.overrides)
    if isinstance(args.resume, str):
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"--resume {run_dir}: no config.yaml there, so it is not a run directory")
        path = path or run_dir / "config.yaml"
        overrides.insert(0, f"run.out_dir={run_dir}")
    if path is None:
        raise ConfigError("give --config FILE (or --resume RUN_DIR)")
    return load_config(config_cls, path, overrides)


def run_training(args: argparse.Namespace, config_cls: type, make_task: Callable, model_config: Callable) -> int:
    """Load the config, join the process group, train, and print the final metrics as JSON.

    Under `torchrun --max-restarts=K` a round of workers that replaces one with a dead rank gets
    the same command line; it continues the run dir from its newest checkpoint when an earlier
    round of the same torchrun job started that run dir (never a run the job found there).
    """
    from clipgen.engine.dist import cleanup_distributed, get_job_value, init_distributed, set_job_value
    from clipgen.engine.logging import setup_console_logging
    from clipgen.engine.trainer import Trainer, prepare_run_dir

    cfg = resolve_config(config_cls, args)
    info = init_distributed(cfg.run.device)
    setup_console_logging(info.is_main)
    try:
        resume = args.resume is not None
        if info.restart_count > 0 and not resume:
            # every rank reads the same value from torchrun's store, so all of them decide alike
            resume = get_job_value("run_dir") == cfg.run.out_dir
            if info.is_main:
                log.warning(
                    "torchrun restart %d (of at most %s): %s", info.restart_count, os.environ.get("TORCHELASTIC_MAX_RESTARTS", "?"),
                    f"continuing {cfg.run.out_dir} from its newest checkpoint" if resume
                    else f"starting as in the first round: no earlier round of this job started {cfg.run.out_dir}"
                    " (with --resume, every round continues the run dir)",
                )  # fmt: skip
        # the task first: what it finds wrong with the settings (data, models, paths) stops the run
        # before anything is written to the run dir
        task = make_task(cfg, info)
        prepare_run_dir(cfg, cfg.run, info, resume)
        if info.is_main:  # the run dir is this job's now: a restarted round continues it
            set_job_value("run_dir", cfg.run.out_dir)
        result = Trainer(cfg.run, task, info, model_config(cfg)).fit(resume=resume)
        if info.is_main:
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    finally:
        cleanup_distributed()
    return 0
