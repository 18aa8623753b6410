"""clipgen compare: the same prompts and seeds for every run, every metric in one report that its
own command regenerates, prompts from a MUGE TSV, and the same figures under torchrun."""

import base64
import io
import json
import shlex

import pytest

from clipgen.cli import main as clipgen_main
from gpt_helpers import gpt_args, make_stages

PROMPTS = ["左上有一个大的红色圆形", "中间有一个小的蓝色正方形", "右下角有一个大的黄色三角形"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = make_stages(tmp_path_factory.mktemp("compare"), caption_embeddings=True)
    for name, extra in {"language-free": ["condition.gap.bridge=lafite"], "caption-trained": ["condition.source=caption"]}.items():
        assert clipgen_main(gpt_args(root, root / name, 2, "run.image_every=0", *extra)) == 0
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n\n", encoding="utf-8")
    return root


def compare_args(root, out, *extra):
    return ["compare", "--runs", str(root / "language-free"), str(root / "caption-trained"), "--prompts",
            str(root / "prompts.txt"), "--real", str(root / "heldout"), "--num-images", "2", "--seed", "3",
            "--batch-size", "2", "--out", str(out), *extra]  # fmt: skip


def test_compare_writes_every_metric_per_run_and_regenerates_from_its_command(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert clipgen_main(compare_args(runs, out)) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert list(summary["metrics"]) == ["language-free", "caption-trained"]
    for metrics in summary["metrics"].values():
        assert set(metrics) == {"fd_clip", "clip_score", "colour", "shape", "size", "position"}
        assert metrics["fd_clip"] >= 0 and 0 <= metrics["clip_score"] <= 100
    assert summary["real_images"] == 8 and summary["prompts"] == 3 and summary["judge"]
    for name in ("report.md", "metrics.csv", "bars.png", "grids/0000.png", "grids/0002.png"):
        assert (out / name).stat().st_size > 0, name
    assert sorted(p.name for p in (out / "samples" / "caption-trained").iterdir()) == [f"{i:04d}_{k}.png" for i in range(3) for k in range(2)]
    csv = (out / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("run,fd_clip,clip_score,colour") and len(csv) == 3
    report = (out / "report.md").read_text()
    assert "| language-free |" in report and "| caption-trained |" in report and summary["command"] in report

    # the recorded command, run again into the same directory, gives the same figures
    command = shlex.split(summary["command"])
    assert command[:2] == ["clipgen", "compare"]
    assert clipgen_main(command[1:]) == 0
    assert json.loads((out / "metrics.json").read_text())["metrics"] == summary["metrics"]


def test_every_run_draws_from_the_same_seeds(runs, tmp_path):
    # the same run twice under two names: identical samples, so the seeds do not depend on the run
    import shutil

    shutil.copytree(runs / "language-free", tmp_path / "twin")
    out = tmp_path / "cmp"
    assert clipgen_main(["compare", "--runs", str(runs / "language-free"), str(tmp_path / "twin"), "--prompts",
                         str(runs / "prompts.txt"), "--out", str(out), "--top-k", "5"]) == 0  # fmt: skip
    for i in range(3):
        a, b = ((out / "samples" / name / f"{i:04d}_0.png").read_bytes() for name in ("language-free", "twin"))
        assert a == b


def test_prompts_and_reference_images_from_a_muge_tsv(runs, tmp_path):
    from PIL import Image

    def b64(colour):  # references of another size than the samples: fitted to 32×32 like shard images
        buffer = io.BytesIO()
        Image.new("RGB", (48, 40), colour).save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode()

    lines = [f"{i}\t{prompt}\t{b64((40 * i, 90, 200))}" for i, prompt in enumerate(PROMPTS)]
    lines.append("9\t坏的一行\tnot-base64!")  # a corrupt image: the prompt stays, its reference is lost
    lines.append("broken line without tabs")  # nothing usable: skipped with a warning
    (tmp_path / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "cmp"
    assert clipgen_main(["compare", "--runs", str(runs / "language-free"), "--prompts", str(tmp_path / "test.tsv"),
                         "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["prompts"] == 4 and summary["real_images"] == 3 and "fd_clip" in summary["metrics"]["language-free"]


def test_run_names_are_unique_directory_names(tmp_path):
    from clipgen.comparison.run import run_names

    assert run_names([tmp_path / "a" / "run", tmp_path / "b" / "run", tmp_path / "c" / "other"]) == ["run", "run-2", "other"]


def test_references_are_fitted_to_the_samples_size():
    from PIL import Image

    from clipgen.comparison.run import CompareJob, _real_batches
    from clipgen.engine.dist import DistInfo

    job = CompareJob(runs=[], prompts_file=None, out=None)
    references = [Image.new("RGB", (48, 40), "red"), Image.new("RGB", (20, 64), "blue")]
    (batch,) = list(_real_batches(job, references, 32, DistInfo()))
    assert [image.size for image in batch] == [(32, 32), (32, 32)]


def test_the_judge_scores_shapes_prompts_only_unless_told(runs, tmp_path):
    (tmp_path / "muge.txt").write_text("一件大的白色T恤\n红色连衣裙\n", encoding="utf-8")
    common = ["compare", "--runs", str(runs / "language-free"), "--prompts", str(tmp_path / "muge.txt")]
    assert clipgen_main([*common, "--out", str(tmp_path / "auto")]) == 0
    assert "colour" not in json.loads((tmp_path / "auto" / "metrics.json").read_text())["metrics"]["language-free"]
    assert clipgen_main([*common, "--out", str(tmp_path / "forced"), "--judge", "shapes"]) == 0
    assert "colour" in json.loads((tmp_path / "forced" / "metrics.json").read_text())["metrics"]["language-free"]


def test_bad_input_is_a_clear_error(runs, tmp_path):
    with pytest.raises(SystemExit, match="prompts file not found"):
        clipgen_main(["compare", "--runs", str(runs / "language-free"), "--prompts", str(tmp_path / "none.txt"), "--out", str(tmp_path / "o")])
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(SystemExit, match="no prompts"):
        clipgen_main(["compare", "--runs", str(runs / "language-free"), "--prompts", str(tmp_path / "blank.txt"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="not a condition-transformer run"):
        clipgen_main(["compare", "--runs", str(runs / "language-free"), str(tmp_path), "--prompts", str(runs / "prompts.txt"),
                      "--out", str(tmp_path / "o")])  # fmt: skip
    with pytest.raises(SystemExit, match="shards"):  # found before any run is sampled
        clipgen_main(["compare", "--runs", str(runs / "language-free"), "--prompts", str(runs / "prompts.txt"),
                      "--real", str(tmp_path / "no-shards"), "--out", str(tmp_path / "o")])  # fmt: skip
    assert not (tmp_path / "o" / "samples").exists()


def test_torchrun_gives_the_figures_of_one_process(runs, tmp_path):
    from dist_helpers import torchrun

    single, multi = tmp_path / "single", tmp_path / "multi"
    assert clipgen_main(compare_args(runs, single)) == 0
    torchrun("-m", "clipgen", *compare_args(runs, multi))
    a = json.loads((single / "metrics.json").read_text())["metrics"]
    b = json.loads((multi / "metrics.json").read_text())["metrics"]
    for run in a:
        for key in a[run]:
            assert b[run][key] == pytest.approx(a[run][key], rel=1e-4, abs=1e-4), (run, key)
    # every rank wrote its share of the samples
    assert len(list((multi / "samples" / "language-free").glob("*.png"))) == 6
