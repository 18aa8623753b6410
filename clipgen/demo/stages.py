"""The demo's stages, each resumable: a second run finds the finished work and goes on from it."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np

from clipgen.config import load_config

log = logging.getLogger("clipgen.demo")


def claim_output_dir(out: Path, settings: dict) -> None:
    """Every stage resumes what it finds, so work done with other settings (another seed, other
    steps, another bridge) would otherwise be mixed into this demo's results."""
    from clipgen.engine.atomic import check_or_record_settings

    check_or_record_settings(out / "demo-settings.json", settings)


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


def draw_corpus(directory: Path, n: int, seed: int, size: int = 32) -> None:
    """shapes-zh images into `directory`, unless a complete drawing with these settings is there."""
    from clipgen.data.shapes_shards import make_shapes

    if _corpus_source(directory) != {"n": n, "seed": seed, "size": size}:
        make_shapes(directory, n, size=size, seed=seed, shard_size=1000, overwrite=True)


def write_unpaired_texts(path: Path, n: int, seed: int) -> Path:
    """Captions of random label sets drawn apart from every image: the "unpaired text" from which
    the C3 bridge takes its text mean (a user would bring any sentences of the domain)."""
    from clipgen.data.shapes import ATTRIBUTES, make_caption

    rng = np.random.default_rng([seed, 0x7E47])
    lines = []
    for _ in range(n):
        labels = {name: values[int(rng.integers(len(values)))].canonical for name, values in ATTRIBUTES.items()}
        lines.append(make_caption(labels, rng)[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_stage(config_cls: type, yaml_path: Path, overrides: list[str], make_task: Callable, model_config: Callable) -> dict:
    """One training run in this process, continued if its run directory holds checkpoints."""
    from clipgen.engine.dist import cleanup_distributed, init_distributed
    from clipgen.engine.trainer import Trainer, prepare_run_dir

    cfg = load_config(config_cls, yaml_path, overrides)
    info = init_distributed(cfg.run.device)
    try:
        prepare_run_dir(cfg, cfg.run, info, resume=True)
        return Trainer(cfg.run, make_task(cfg, info), info, model_config(cfg)).fit(resume=True)
    finally:
        cleanup_distributed()


def train_gpt(yaml_path: Path, overrides: list[str]) -> tuple[dict, float]:
    """One condition-transformer run (train_stage), and its wall seconds."""
    from clipgen.train.gpt import GPTTask, GPTTrainConfig

    start = time.time()
    return train_stage(GPTTrainConfig, yaml_path, overrides, GPTTask, _model_of), time.time() - start


def _model_of(cfg):
    return cfg.model


def _worker_threads(threads: int) -> None:
    import torch

    from clipgen.engine.allocator import keep_freed_memory
    from clipgen.engine.logging import setup_console_logging

    keep_freed_memory()  # a spawned interpreter: the parent's malloc settings are not inherited
    torch.set_num_threads(threads)
    setup_console_logging(True)


def train_gpts_side_by_side(yaml_path: Path, overrides: dict[str, list[str]]) -> dict[str, tuple[dict, float]]:
    """Independent condition-transformer runs, two at a time, each in a process of its own with half
    of torch's threads; with an odd count the last one runs alone, here, on all of them.

    At the demo's size a step does not keep two threads busy: on 2 cores two one-thread runs side by
    side did 1.34x the steps per second of one two-thread run (bench/gpt_step.py in float32, 88.7 ms
    a step against 128.7 and 136.8 ms each side by side, Xeon-AMX). Each run's result depends only on its
    own settings, not on what runs beside it (their own processes)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    names = list(overrides)
    threads = torch.get_num_threads()
    paired = names[: len(names) - len(names) % 2] if threads >= 2 else []
    done: dict[str, tuple[dict, float]] = {}
    if paired:
        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch thread pool inherited
        with ProcessPoolExecutor(2, mp_context=spawn, initializer=_worker_threads, initargs=(threads // 2,)) as pool:
            futures = {name: pool.submit(train_gpt, yaml_path, overrides[name]) for name in paired}
            done = {name: future.result() for name, future in futures.items()}
    for name in names[len(paired) :]:
        done[name] = train_gpt(yaml_path, overrides[name])
    return {name: done[name] for name in names}


def extract_tokens(vqgan_dir: Path, clip_dir: Path, data: Path, out: Path) -> dict:
    """Codes, image embeddings and (for the caption-trained baseline) caption embeddings."""
    from clipgen.engine.dist import cleanup_distributed, init_distributed
    from clipgen.extract import ExtractJob, run_extract
    from clipgen.models.vqgan import vqgan_model_dir

    info = init_distributed("auto")
    try:
        job = ExtractJob(vqgan_model_dir(vqgan_dir), f"toy:{clip_dir}", str(data), out, batch_size=256, caption_embeddings=True)
        return run_extract(job, info)
    finally:
        cleanup_distributed()


def measure_gap(heldout_tokens: Path) -> dict[str, float]:
    """Pair cosine and mean distance between held-out images and their own captions (both
    embeddings stored by extract)."""
    import torch

    from clipgen.data.token_dataset import TokenData
    from clipgen.encoders.gap import gap_statistics

    data = TokenData.load(str(heldout_tokens))
    image, text = (torch.nn.functional.normalize(e.float(), dim=-1) for e in (data.clip, data.text))
    return gap_statistics(image, text)


def write_caption_vocab(path: Path, captions: list[str]) -> tuple[Path, int, int]:
    """The text-token baseline's vocab (every character a shapes-zh caption can hold) and the
    caption length that fits every training caption: (vocab file, vocab size, length)."""
    from clipgen.encoders.caption_tokens import CaptionTokenizer, write_char_vocab
    from clipgen.train.toy_clip import caption_characters

    write_char_vocab(caption_characters(), path)
    tokenizer = CaptionTokenizer(path, 1)
    length = max(len(tokenizer.tokenizer.encode(c, add_special_tokens=False)) for c in set(captions))
    return path, tokenizer.vocab_size, length


def derive_retrieval_run(trained: Path, out: Path, train_image_emb, retrieval_k: int, seed: int) -> Path:
    """The run that answers prompts through the retrieval bridge, made from the no-bridge run.

    The retrieval bridge trains exactly as `none` does (tests/test_train_gpt.py checks that the
    weights come out bit-identical), so training the same model a second time would only spend
    the demo's budget: `out` gets `trained`'s weights, the retrieval bridge with its bank of
    training-image embeddings, and a condition.yaml that says so; derived-from.json records where
    the weights came from."""
    import shutil

    from clipgen.config import save_config
    from clipgen.encoders.gap import GapBridge
    from clipgen.run_dir import CONDITION_NAME, MODEL_DIR_NAME, read_condition

    condition = read_condition(trained)
    if condition.gap.bridge != "none":
        raise ValueError(f"{trained} was trained with the {condition.gap.bridge} bridge, not none")
    condition.gap.bridge, condition.gap.retrieval_k = "retrieval", retrieval_k
    shutil.copytree(trained / MODEL_DIR_NAME, out / MODEL_DIR_NAME, dirs_exist_ok=True)
    bank = GapBridge.bank_from(train_image_emb, condition.gap.bank_size, seed)
    GapBridge(condition.gap, bank=bank).save(out)
    save_config(condition, out / CONDITION_NAME)
    note = {"weights_from": str(trained), "why": "the retrieval bridge trains exactly as none; only inference differs"}
    (out / "derived-from.json").write_text(json.dumps(note, indent=2), encoding="utf-8")
    return out
