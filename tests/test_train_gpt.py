"""A miniature condition-transformer run: tokens in, run dir out, samples drawn, resume exact."""

import json
from pathlib import Path

import pytest
import torch

from clipgen.cli import main as clipgen_main
from clipgen.encoders.gap import GapBridge
from clipgen.engine.checkpoint import latest_checkpoint, load_checkpoint
from clipgen.models.gpt import load_gpt
from gpt_helpers import gpt_args, make_stages


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return make_stages(tmp_path_factory.mktemp("gpt_stages"))


def test_gpt_run_writes_model_bridge_and_samples(stages, tmp_path, capsys):
    out = tmp_path / "gpt"
    text_file = stages / "texts.txt"
    assert clipgen_main(gpt_args(stages, out, 4, "condition.gap.bridge=c3", "condition.gap.noise=0.1",
                                 f"condition.gap.text_file={text_file}")) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 4 and summary["val_loss"] > 0
    model = load_gpt(out / "model")
    assert model.config.block_size == 64 and model.config.vocab_size == 64
    bridge = GapBridge.load(out)
    assert bridge.config.bridge == "c3" and bridge.text_mean.shape == (16,)
    assert list((out / "samples").glob("samples_*.png")) and (out / "condition.yaml").is_file()


def test_gpt_resume_continues_exactly(stages, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert clipgen_main(gpt_args(stages, straight, 4, "condition.gap.bridge=lafite", "condition.gap.noise=0.5")) == 0
    assert clipgen_main(gpt_args(stages, split, 2, "condition.gap.bridge=lafite", "condition.gap.noise=0.5")) == 0
    assert clipgen_main(["train-gpt", "--resume", str(split), "--set", "run.max_steps=4"]) == 0
    a = load_checkpoint(latest_checkpoint(straight / "checkpoints"))["task"]["model"]
    b = load_checkpoint(latest_checkpoint(split / "checkpoints"))["task"]["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # optimizer state of another kind is refused by name, not by torch's group-count message
    from clipgen.config import ConfigError

    with pytest.raises(ConfigError, match="muon optimizer state; this config says optim.optimizer=adamw"):
        clipgen_main(["train-gpt", "--resume", str(split), "--set", "run.max_steps=6", "--set", "optim.optimizer=adamw"])


def test_token_data_that_does_not_fit_the_model_is_a_clear_error(stages, tmp_path):
    from clipgen.config import ConfigError

    with pytest.raises(ConfigError, match="block_size"):
        clipgen_main(gpt_args(stages, tmp_path / "x", 2, "model.block_size=16"))


def test_pipeline_and_sample_script(stages, tmp_path, capsys):
    import subprocess
    import sys

    from clipgen.pipeline import ClipGenPipeline

    out = tmp_path / "gpt"
    assert clipgen_main(gpt_args(stages, out, 2)) == 0
    pipe = ClipGenPipeline.from_pretrained(out)
    images = pipe(["红色圆形", "左上有一个小的蓝色方块"], num_images=2, seed=3)
    assert [len(row) for row in images] == [2, 2] and images[0][0].size == (32, 32)
    again = pipe(["红色圆形", "左上有一个小的蓝色方块"], num_images=2, seed=3, kv_cache=False)
    assert [len(row) for row in again] == [2, 2]
    assert all(a.tobytes() == b.tobytes() for ra, rb in zip(images, again) for a, b in zip(ra, rb))
    with pytest.raises(ValueError, match="empty"):
        pipe(["红色", " "])

    script = Path(__file__).parent.parent / "sample.py"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("红色圆形\n三角形\n", encoding="utf-8")
    run = subprocess.run([sys.executable, str(script), "--ckpt", str(out), "--prompts-file", str(prompts),
                          "--num-images", "2", "--seed", "0", "--out", str(tmp_path / "samples")],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["0000_0.png", "0000_1.png", "0001_0.png", "0001_1.png", "grid.png"]
    blank = subprocess.run([sys.executable, str(script), "--ckpt", str(out), "--prompt", "  "], capture_output=True, text=True)
    assert blank.returncode == 2 and "empty" in blank.stderr


def test_reranking_keeps_the_candidates_clip_scores_best(stages, tmp_path):
    from clipgen.pipeline import ClipGenPipeline

    out = tmp_path / "gpt"
    assert clipgen_main(gpt_args(stages, out, 2)) == 0
    pipe = ClipGenPipeline.from_pretrained(out)
    prompts = ["红色圆形", "左上有一个小的蓝色方块"]
    everything = pipe(prompts, num_images=6, seed=5)
    kept = pipe(prompts, num_images=2, seed=5, candidates=6)
    for prompt, pool, best in zip(prompts, everything, kept):
        scores = pipe.clip.encode_image(pool) @ pipe.clip.encode_text([prompt])[0]
        expected = [pool[i].tobytes() for i in scores.argsort(descending=True)[:2].tolist()]
        assert [image.tobytes() for image in best] == expected
    with pytest.raises(ValueError, match="candidates"):
        pipe(prompts, num_images=3, candidates=2)


def test_sample_script_reranks_with_another_clip(stages, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "gpt"
    assert clipgen_main(gpt_args(stages, out, 2)) == 0
    script = Path(__file__).parent.parent / "sample.py"
    common = [sys.executable, str(script), "--ckpt", str(out), "--prompt", "红色圆形", "--num-images", "2", "--seed", "0"]
    run = subprocess.run([*common, "--candidates", "4", "--rerank-clip", f"toy:{stages / 'clip'}", "--out", str(tmp_path / "s")],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["0000_0.png", "0000_1.png", "grid.png"]
    bad = subprocess.run([*common, "--candidates", "4", "--rerank-clip", "toy"], capture_output=True, text=True)
    assert bad.returncode == 2 and "KIND:PATH" in bad.stderr


def test_retrieval_bridge_trains_exactly_as_none_and_retrieves_at_inference(stages, tmp_path):
    from clipgen.pipeline import ClipGenPipeline

    none, retrieval = tmp_path / "none", tmp_path / "retrieval"
    assert clipgen_main(gpt_args(stages, none, 2)) == 0
    assert clipgen_main(gpt_args(stages, retrieval, 2, "condition.gap.bridge=retrieval", "condition.gap.retrieval_k=2")) == 0
    a, b = load_gpt(none / "model").state_dict(), load_gpt(retrieval / "model").state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    pipe = ClipGenPipeline.from_pretrained(retrieval)
    assert pipe.bridge.bank.shape == (32, 16)  # every training image's embedding
    text = pipe.clip.encode_text(["红色圆形"])
    nearest = (text @ pipe.bridge.bank.float().T).topk(2).indices[0]
    expected = torch.nn.functional.normalize(pipe.bridge.bank[nearest].float().mean(0), dim=-1)
    torch.testing.assert_close(pipe.encode_prompts(["红色圆形"])[0], expected)
