"""The demo, in miniature: every stage runs, the report says what it measured, and the
language-free run directory samples."""

import json

import pytest

from clipgen.cli import main as clipgen_main
from clipgen.demo.run import split_overrides
from clipgen.pipeline import ClipGenPipeline
from clipgen.sampling import SamplingSettings, read_run_sampling
from clipgen.serve.runs import find_runs

TINY = [
    "clip.run.max_steps=3", "clip.run.batch_size=8", "clip.run.eval_every=0", "clip.run.ckpt_every=0", "clip.eval.max_images=16",
    "vqgan.run.max_steps=3", "vqgan.run.batch_size=4", "vqgan.run.eval_every=0", "vqgan.run.ckpt_every=0",
    "vqgan.run.image_every=3", "vqgan.eval.max_images=16", "vqgan.model.n_embed=32",
    "gpt.run.max_steps=3", "gpt.run.batch_size=8", "gpt.run.eval_every=3", "gpt.run.ckpt_every=0", "gpt.run.image_every=0",
    "gpt.model.n_layer=1", "gpt.model.n_embd=32", "gpt.model.n_head=2", "gpt.model.vocab_size=32",
]  # fmt: skip


@pytest.mark.timeout(600)
def test_demo_runs_every_stage_and_writes_its_report(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n-train", "48", "--n-heldout", "16", "--eval-prompts", "12",
            "--eval-images", "12", "--set", *TINY]  # fmt: skip
    assert clipgen_main(args) == 0
    results = json.loads((out / "results.json").read_text())
    trained = {"bridge-none", "bridge-lafite", "bridge-c3", "caption-trained", "text-token"}
    assert set(results["stage_seconds"]) == {
        "make-shapes", "train-toy-clip", "train-vqgan", "extract", "train-gpt (5 runs, two at a time)",
        "language-free (retrieval bridge on the no-bridge weights)", "evaluate",
    }  # fmt: skip
    assert set(results["gpt_run_seconds"]) == trained  # each run's own time (they overlap)
    assert list(results["accuracy"]) == ["bridge-none", "bridge-lafite", "bridge-c3", "language-free", "caption-trained", "text-token"]
    for accuracy in [*results["accuracy"].values(), results["image_conditioned"], results["reconstructions"]]:
        assert set(accuracy) == {"colour", "shape", "size", "position"}
        assert all(0 <= value <= 100 for value in accuracy.values())
    for metrics in results["comparison"]["metrics"].values():
        assert metrics["fd_clip"] >= 0 and 0 <= metrics["clip_score"] <= 100
    assert -1 <= results["gap"]["pair_cosine"] <= 1 and results["gap"]["mean_distance"] >= 0
    assert all(gpt["step"] == 3 for gpt in results["gpt"].values())
    assert "baseline_margin_met" in results and "targets_met" in results

    report = (out / "report.md").read_text()
    for needle in ("retrieval bridge** (`language-free/`)", "C³", "no bridge", "LAFITE", "caption-trained", "text-token", "no gap",
                   "FD (CLIP)", "pair", "grid.png", "curves.png", "**total**"):  # fmt: skip
        assert needle in report, needle
    assert (out / "grid.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    compare = out / "compare"
    assert (compare / "report.md").is_file() and (compare / "metrics.csv").is_file() and (compare / "bars.png").is_file()
    assert len(list((compare / "samples" / "text-token").glob("*.png"))) == 12

    # the baselines are run directories the pipeline accepts too
    for run in ("caption-trained", "text-token"):
        assert ClipGenPipeline.from_pretrained(out / run)(["中间有一个小的蓝色正方形"], seed=0)[0][0].size == (32, 32)

    # DIR/language-free is a run directory the sampling script accepts: the no-bridge weights, retrieving
    assert json.loads((out / "language-free" / "derived-from.json").read_text())["weights_from"].endswith("bridge-none")
    assert (out / "language-free" / "gap-bank.safetensors").is_file()
    images = ClipGenPipeline.from_pretrained(out / "language-free")(["左上有一个大的红色圆形"], num_images=2, seed=0)
    assert len(images[0]) == 2 and images[0][0].size == (32, 32)

    # each generator keeps the settings it was judged with, and `clipgen serve DIR/*/` finds exactly them
    judged = SamplingSettings(guidance_scale=1.5, top_k=1)
    assert all(read_run_sampling(out / run) == judged for run in results["accuracy"])
    assert list(find_runs(sorted(out.glob("*/")))) == sorted(results["accuracy"])

    # a second call finds every stage finished and trains nothing again
    logged = {run: (out / run / "metrics.jsonl").read_text() for run in ("toy-clip", "vqgan", "bridge-c3", "text-token")}
    assert clipgen_main(args) == 0
    assert {run: (out / run / "metrics.jsonl").read_text() for run in logged} == logged
    assert json.loads((out / "results.json").read_text())["gpt"]["bridge-c3"]["step"] == 3
    # other settings in the same directory would mix stale work into the results: refused
    with pytest.raises(SystemExit, match="other settings"):
        clipgen_main([*args[:2], str(out), *args[3:], "gpt.run.max_steps=4"])


def test_demo_overrides_must_name_their_stage():
    assert split_overrides(["gpt.run.max_steps=5", "clip.optim.lr=1e-3"])["gpt"] == ["run.max_steps=5"]
    with pytest.raises(ValueError, match="must start with a stage"):
        split_overrides(["run.max_steps=5"])
