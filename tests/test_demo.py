"""The demo, in miniature: every stage runs, the report says what it measured, and the
language-free run directory samples."""

import json

import pytest

from clipgen.cli import main as clipgen_main
from clipgen.demo.run import split_overrides

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
    assert set(results["stage_seconds"]) == {
        "make-shapes", "train-toy-clip", "train-vqgan", "extract",
        "train-gpt (none)", "train-gpt (lafite)", "train-gpt (c3)", "evaluate",
    }  # fmt: skip
    assert set(results["bridges"]) == {"none", "lafite", "c3"}
    for accuracy in [*results["bridges"].values(), results["image_conditioned"], results["reconstructions"]]:
        assert set(accuracy) == {"colour", "shape", "size", "position"}
        assert all(0 <= value <= 100 for value in accuracy.values())
    assert -1 <= results["gap"]["pair_cosine"] <= 1 and results["gap"]["mean_distance"] >= 0
    assert all(gpt["step"] == 3 for gpt in results["gpt"].values())

    report = (out / "report.md").read_text()
    for needle in ("bridge c3 (language-free/)", "bridge none", "bridge lafite", "no gap", "pair", "grid.png", "curves.png", "**total**"):
        assert needle in report, needle
    assert (out / "grid.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0

    # DIR/language-free is a run directory the sampling script accepts
    from clipgen.pipeline import ClipGenPipeline

    images = ClipGenPipeline.from_pretrained(out / "language-free")(["左上有一个大的红色圆形"], num_images=2, seed=0)
    assert len(images[0]) == 2 and images[0][0].size == (32, 32)

    # a second call finds every stage finished and trains nothing again
    logged = {run: (out / run / "metrics.jsonl").read_text() for run in ("toy-clip", "vqgan", "language-free", "bridge-none")}
    assert clipgen_main(args) == 0
    assert {run: (out / run / "metrics.jsonl").read_text() for run in logged} == logged
    assert json.loads((out / "results.json").read_text())["gpt"]["c3"]["step"] == 3
    # other settings in the same directory would mix stale work into the results: refused
    with pytest.raises(SystemExit, match="other settings"):
        clipgen_main([*args[:2], str(out), *args[3:], "gpt.run.max_steps=4"])


def test_demo_overrides_must_name_their_stage():
    assert split_overrides(["gpt.run.max_steps=5", "clip.optim.lr=1e-3"])["gpt"] == ["run.max_steps=5"]
    with pytest.raises(ValueError, match="must start with a stage"):
        split_overrides(["run.max_steps=5"])
