"""The shapes-zh demo: every stage that exists, run in order, with a report of what it measured."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

from clipgen.config import load_config

log = logging.getLogger("clipgen.demo")


@contextlib.contextmanager
def _timed(stage_times: dict[str, float], name: str):
    log.info("demo: %s ...", name)
    start = time.time()
    yield
    stage_times[name] = time.time() - start


def _corpus_source(directory: Path) -> dict | None:
    from clipgen.data.shards import read_manifest

    try:
        manifest = read_manifest(directory)
    except (FileNotFoundError, ValueError):
        return None
    if not manifest.get("complete"):  # an interrupted drawing: draw again
        return None
    source = manifest.get("source") or {}
    return {k: source.get(k) for k in ("n", "seed", "size")}


def run_demo(out: Path, n_train: int, n_heldout: int, seed: int, overrides: list[str], config_dir: Path) -> dict:
    from clipgen.commands.make_shapes import make_shapes
    from clipgen.engine.dist import cleanup_distributed, init_distributed
    from clipgen.engine.logging import setup_console_logging
    from clipgen.engine.trainer import Trainer, prepare_run_dir
    from clipgen.train.vqgan import VQGANTask, VQGANTrainConfig

    setup_console_logging(True)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    data = out / "data"
    with _timed(times, "make-shapes"):
        for name, n, corpus_seed in (("train", n_train, seed), ("heldout", n_heldout, seed + 1)):
            wanted = {"n": n, "seed": corpus_seed, "size": 32}
            if _corpus_source(data / name) != wanted:  # absent, or drawn with other settings
                make_shapes(data / name, n, size=32, seed=corpus_seed, shard_size=1000, overwrite=True)
    cfg = load_config(
        VQGANTrainConfig,
        config_dir / "vqgan" / "shapes32.yaml",
        [f"run.out_dir={out / 'vqgan'}", f"data.shards={data / 'train'}", f"eval.shards={data / 'heldout'}",
         f"run.seed={seed}", *overrides],
    )  # fmt: skip
    info = init_distributed(cfg.run.device)
    try:
        with _timed(times, "train-vqgan"):
            prepare_run_dir(cfg, cfg.run, info, resume=True)
            vqgan = Trainer(cfg.run, VQGANTask(cfg, info), info, cfg.model).fit(resume=True)
    finally:
        cleanup_distributed()
    results = {"stage_seconds": times, "vqgan": vqgan, "fd_features": cfg.eval.fd_features}
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_report(out, results)
    log.info("demo: wrote %s", out / "report.md")
    return results


def write_report(out: Path, results: dict) -> None:
    vq = results["vqgan"]
    samples = sorted((out / "vqgan" / "samples").glob("reconstructions_*.png"))
    lines = [
        "# clipgen demo on shapes-zh",
        "",
        "## VQGAN (trained on images only)",
        "",
        "| held-out metric | value |",
        "|---|---|",
        f"| PSNR (dB) | {vq.get('psnr', float('nan')):.2f} |",
        f"| codebook in use (%) | {vq.get('codebook_usage_pct', float('nan')):.1f} |",
        f"| Fréchet distance ({results['fd_features']} features) | {vq.get('fd_' + results['fd_features'], float('nan')):.4f} |",
        f"| images | {vq.get('images', 0):.0f} |",
        f"| steps | {vq['step']} |",
        "",
    ]
    if samples:
        rel = samples[-1].relative_to(out)
        lines += [f"Originals and reconstructions, side by side: ![reconstructions]({rel})", ""]
    lines += ["## Time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in results["stage_seconds"].items()]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
