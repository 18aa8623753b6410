"""A miniature VQGAN run through the real entry point: shards in, run dir out, resume exact."""

import json
from pathlib import Path

import pytest
import torch

from clipgen.cli import main as clipgen_main
from clipgen.data.shapes_shards import make_shapes
from clipgen.config import ConfigError
from clipgen.engine.checkpoint import latest_checkpoint, load_checkpoint

ROOT = Path(__file__).parent.parent
SHAPES32 = ROOT / "configs/vqgan/shapes32.yaml"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root / "train", 96, size=16, seed=0, shard_size=24)
    make_shapes(root / "heldout", 24, size=16, seed=1, shard_size=12)
    return root


def tiny_overrides(shards: Path, out: Path, steps: int) -> list[str]:
    settings = {
        "run.out_dir": out, "run.max_steps": steps, "run.batch_size": 4, "run.log_every": 1,
        "run.eval_every": 2, "run.ckpt_every": 2, "run.image_every": 2, "run.ema_decay": 0.9,
        "data.shards": shards / "train", "data.image_size": 16, "data.num_workers": 0, "data.shuffle": True,
        "eval.shards": shards / "heldout", "eval.max_images": 0,
        "model.resolution": 16, "model.ch_mult": "[1, 2]", "model.attn_resolutions": "[8]",
        "model.z_channels": 8, "model.embed_dim": 4, "model.n_embed": 16,
        # a restart right after the resume test's split, which then needs the saved use counts
        "model.quantizer.restart_every": 3,
        # the split run of the resume test changes max_steps, which a cosine schedule depends on
        "optim.schedule": "constant",
        "loss.disc_weight": 0.5, "loss.disc_start": 1, "loss.disc_layers": 1, "loss.disc_channels": 8,
    }  # fmt: skip
    args = []
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return args


def train(*args: str) -> int:
    return clipgen_main(["train-vqgan", *args])


def test_run_writes_a_complete_run_dir(shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--config", str(SHAPES32), *tiny_overrides(shards, out, 4)) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 4 and summary["images"] == 24
    assert 0 < summary["psnr"] < 100 and 0 < summary["codebook_usage_pct"] <= 100 and summary["fd_pixels"] >= 0
    assert (out / "config.yaml").is_file() and any((out / "tb").iterdir())
    assert sorted(p.name for p in (out / "model").iterdir()) == ["config.json", "model.safetensors"]
    assert list((out / "samples").glob("reconstructions_*.png"))
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/psnr" in row for row in logged)
    assert any("train/d_loss" in row for row in logged)  # the GAN switched on at step 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002.pt", "step_00000004.pt"]
    state = load_checkpoint(latest_checkpoint(out / "checkpoints"))
    assert state["step"] == 4 and state["data"]["batches"] == 4
    assert {"model", "disc", "opt_g", "opt_d", "ema"} <= set(state["task"])


def test_resume_continues_exactly(shards, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train("--config", str(SHAPES32), *tiny_overrides(shards, straight, 4)) == 0
    assert train("--config", str(SHAPES32), *tiny_overrides(shards, split, 2)) == 0
    assert train("--resume", str(split), "--set", "run.max_steps=4") == 0
    a = load_checkpoint(latest_checkpoint(straight / "checkpoints"))["task"]
    b = load_checkpoint(latest_checkpoint(split / "checkpoints"))["task"]
    for part in ("model", "disc", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    for opt in ("opt_g", "opt_d"):
        for index, moments in a[opt]["state"].items():
            for name, value in moments.items():
                assert torch.equal(value, b[opt]["state"][index][name]), f"{opt}.{index}.{name}"


def test_resume_refuses_another_model_config(shards, tmp_path):
    out = tmp_path / "run"
    assert train("--config", str(SHAPES32), *tiny_overrides(shards, out, 2)) == 0
    with pytest.raises(ConfigError, match="another model config"):
        train("--resume", str(out), "--set", "run.max_steps=4", "--set", "model.n_embed=32")


def test_an_existing_run_is_not_overwritten(shards, tmp_path):
    out = tmp_path / "run"
    assert train("--config", str(SHAPES32), *tiny_overrides(shards, out, 2)) == 0
    with pytest.raises(FileExistsError, match="--resume"):
        train("--config", str(SHAPES32), *tiny_overrides(shards, out, 2))


def test_unknown_override_is_an_error_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="valid keys there"):
        train("--config", str(SHAPES32), "--set", "optim.learning_rate=1", "--set", f"run.out_dir={tmp_path}/x")
    assert not (tmp_path / "x").exists()


def test_resumed_run_does_not_log_steps_twice(shards, tmp_path):
    out = tmp_path / "run"
    assert train("--config", str(SHAPES32), *tiny_overrides(shards, out, 2)) == 0
    # rows a crashed run logged after its last checkpoint, which the resumed run will redo
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "train/loss": 9.0}) + "\n")
    assert train("--resume", str(out), "--set", "run.max_steps=4") == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows_at_3 = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if json.loads(line)["step"] == 3]
    assert steps == sorted(steps) and all(row.get("train/loss") != 9.0 for row in rows_at_3)
    assert sum("train/loss" in row for row in rows_at_3) == 1  # redone once, not dropped, not twice
