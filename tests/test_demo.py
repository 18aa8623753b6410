"""The demo, in miniature: every stage that exists runs and the report says what it measured."""

import json

from clipgen.cli import main as clipgen_main


def test_demo_runs_end_to_end_and_writes_its_report(tmp_path):
    out = tmp_path / "demo"
    small = ["run.max_steps=3", "run.batch_size=4", "run.eval_every=0", "run.ckpt_every=0", "run.image_every=3",
             "eval.max_images=16", "model.n_embed=32"]  # fmt: skip
    args = ["demo", "--out", str(out), "--n-train", "48", "--n-heldout", "16"]
    for item in small:
        args += ["--set", item]
    assert clipgen_main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["vqgan"]["step"] == 3 and results["vqgan"]["images"] == 16
    assert set(results["stage_seconds"]) == {"make-shapes", "train-vqgan"}
    report = (out / "report.md").read_text()
    assert "PSNR (dB)" in report and "codebook in use" in report and "reconstructions_" in report
    assert (out / "vqgan" / "model" / "model.safetensors").is_file()
    # a second call continues the finished run instead of failing or starting over
    assert clipgen_main(args) == 0
    assert json.loads((out / "results.json").read_text())["vqgan"]["step"] == 3
