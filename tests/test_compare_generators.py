"""clipgen compare with generators clipgen did not train: a folder of images (`--images`) and a
local diffusers pipeline (`--diffusers`), beside a clipgen run in one report with the same metrics."""

import json
import shlex
import shutil

import pytest
from PIL import Image

from clipgen.cli import main as clipgen_main
from gpt_helpers import gpt_args, make_stages

PROMPTS = ["左上有一个大的红色圆形", "中间有一个小的蓝色正方形", "右下角有一个大的黄色三角形"]
METRICS = {"fd_clip", "clip_score", "colour", "shape", "size", "position"}


def save_tiny_stable_diffusion(directory):
    """A random Stable Diffusion pipeline with a BERT text encoder, as Taiyi's is built, small
    enough to draw 16-pixel images on a CPU in a blink."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = directory.parent / "sd-vocab.txt"
    characters = sorted({c for prompt in PROMPTS for c in prompt})
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters]) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    text_encoder = BertModel(BertConfig(vocab_size=5 + len(characters), hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32))  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    )  # fmt: skip
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16), latent_channels=4, layers_per_block=1, norm_num_groups=4, sample_size=16,
    )  # fmt: skip
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=BertTokenizer(str(vocab), model_max_length=16), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = make_stages(tmp_path_factory.mktemp("generators"))
    assert clipgen_main(gpt_args(root, root / "clipgen-run", 2, "run.image_every=0")) == 0
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    drawn = root / "drawn-elsewhere"  # another tool's images: another size, fitted to the comparison's
    drawn.mkdir()
    for i in range(len(PROMPTS)):
        for k in range(2):
            Image.new("RGB", (48, 40), (60 * i, 40 + 100 * k, 200)).save(drawn / f"{i:04d}_{k}.png")
    return root


def compare(root, out, *generators):
    return ["compare", *generators, "--prompts", str(root / "prompts.txt"), "--real", str(root / "heldout"),
            "--num-images", "2", "--seed", "3", "--batch-size", "2", "--clip", f"toy:{root / 'clip'}", "--out", str(out)]  # fmt: skip


def test_a_run_a_folder_and_a_diffusers_pipeline_in_one_report(root, tmp_path):
    pytest.importorskip("diffusers")
    pipeline = save_tiny_stable_diffusion(tmp_path / "tiny-sd")
    own = tmp_path / "own"  # the run's own samples, to be read back as a folder
    assert clipgen_main(compare(root, own, "--runs", str(root / "clipgen-run"))) == 0
    shutil.copytree(own / "samples" / "clipgen-run", tmp_path / "copied")

    out = tmp_path / "cmp"
    assert clipgen_main(compare(root, out, "--runs", str(root / "clipgen-run"), "--images", f"copied={tmp_path / 'copied'}",
                                "--images", f"drawn={root / 'drawn-elsewhere'}",
                                "--diffusers", f"tiny-sd={pipeline};steps=2;guidance=3")) == 0  # fmt: skip
    summary = json.loads((out / "metrics.json").read_text())
    metrics = summary["metrics"]
    assert list(metrics) == ["clipgen-run", "copied", "drawn", "tiny-sd"]
    for name, values in metrics.items():
        assert set(values) == METRICS, name
        assert values["fd_clip"] >= 0 and 0 <= values["clip_score"] <= 100
    # a folder of the run's own samples scores exactly as the run: folder images pass unchanged
    assert metrics["copied"] == pytest.approx(metrics["clipgen-run"], abs=1e-6)
    assert "diffusers pipeline" in summary["generators"]["tiny-sd"] and "2 steps" in summary["generators"]["tiny-sd"]
    for name in metrics:  # every image fitted to the run's 32 × 32, for the judge, the CLIP and the grids
        files = sorted((out / "samples" / name).iterdir())
        assert [p.name for p in files] == [f"{i:04d}_{k}.png" for i in range(3) for k in range(2)], name
        assert {Image.open(p).size for p in files} == {(32, 32)}, name
    report = (out / "report.md").read_text()
    assert all(f"| {name} |" in report for name in metrics) and (out / "grids" / "0002.png").is_file()

    # the recorded command names every generator again and redraws the same images
    command = shlex.split(summary["command"])
    assert command.count("--images") == 2 and command.count("--diffusers") == 1
    assert clipgen_main(command[1:]) == 0
    assert json.loads((out / "metrics.json").read_text())["metrics"] == metrics


def test_a_folder_missing_images_is_one_clear_error_before_anything_is_written(root, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(root / "drawn-elsewhere", partial)
    (partial / "0001_1.png").unlink()
    (partial / "0002_0.png").unlink()
    out = tmp_path / "cmp"
    with pytest.raises(SystemExit, match=r"lacks 2 of the 6 images .*: 0001_1\.png, 0002_0\.png \("):
        clipgen_main(compare(root, out, "--runs", str(root / "clipgen-run"), "--images", f"partial={partial}"))
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--diffusers", "sd={missing}"], "no model_index.json there"),
        (["--diffusers", "sd={missing};steps=x"], "steps takes an integer, got 'x'"),
        (["--diffusers", "sd={missing};guidance=high"], "guidance takes a number, got 'high'"),
        (["--diffusers", "sd={missing};strength=1"], "unknown option 'strength=1'"),
        (["--diffusers", "{missing}"], "takes NAME=DIR"),
        (["--images", "a/b={drawn}"], "the name must be"),
        (["--images", "x={drawn}", "--images", "x={drawn}"], "two generators are named x"),
        (["--images", "none={missing}"], "no such directory"),
        ([], "nothing to compare"),
    ],
)
def test_bad_generator_flags_are_clear_errors(root, tmp_path, flags, message):
    flags = [f.format(missing=tmp_path / "missing", drawn=root / "drawn-elsewhere") for f in flags]
    out = tmp_path / "cmp"
    with pytest.raises(SystemExit, match=message):
        clipgen_main(compare(root, out, *flags))
    assert not out.exists()


def test_without_a_clipgen_run_the_scoring_clip_must_be_named(root, tmp_path):
    args = ["compare", "--images", f"drawn={root / 'drawn-elsewhere'}", "--prompts", str(root / "prompts.txt"),
            "--num-images", "2", "--out", str(tmp_path / "cmp")]  # fmt: skip
    with pytest.raises(SystemExit, match="pass --clip"):
        clipgen_main(args)
    assert clipgen_main([*args, "--clip", f"toy:{root / 'clip'}"]) == 0
    metrics = json.loads((tmp_path / "cmp" / "metrics.json").read_text())["metrics"]
    assert set(metrics["drawn"]) == {"clip_score", "colour", "shape", "size", "position"}  # no real images: no FD


def test_an_imported_run_is_refused_guidance_before_anything_is_sampled(root, tmp_path):
    """compare's --guidance-scale defaults to 2, which an imported model (no trained null
    condition) cannot follow: refused while the inputs are checked, with nothing written."""
    from import_helpers import make_painter_dir

    imported = tmp_path / "pai-painter"
    assert clipgen_main(["import", "easynlp", str(make_painter_dir(tmp_path / "painter-src")), "--out", str(imported)]) == 0
    out = tmp_path / "cmp"
    with pytest.raises(SystemExit, match="pai-painter .--guidance-scale. never trained a null condition"):
        clipgen_main(compare(root, out, "--runs", str(root / "clipgen-run"), str(imported)))
    assert not out.exists()


def test_a_clipgen_run_an_imported_release_and_a_diffusers_pipeline_in_one_report(root, tmp_path):
    """Issue 10: a model another project released (EasyNLP's pai-painter layout, imported) stands in
    the same report as a run clipgen trained and a diffusers pipeline."""
    pytest.importorskip("diffusers")
    from import_helpers import make_painter_dir

    pipeline = save_tiny_stable_diffusion(tmp_path / "tiny-sd")
    imported = tmp_path / "pai-painter"
    assert clipgen_main(["import", "easynlp", str(make_painter_dir(tmp_path / "painter-src")), "--out", str(imported)]) == 0
    out = tmp_path / "cmp"
    # no guidance: an imported model has no null condition to guide against
    assert clipgen_main(compare(root, out, "--runs", str(root / "clipgen-run"), str(imported),
                                "--diffusers", f"tiny-sd={pipeline};steps=2;guidance=3", "--guidance-scale", "1")) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert list(metrics) == ["clipgen-run", "pai-painter", "tiny-sd"]
    for name, values in metrics.items():
        assert set(values) == METRICS, name
        files = sorted((out / "samples" / name).iterdir())
        assert [p.name for p in files] == [f"{i:04d}_{k}.png" for i in range(3) for k in range(2)], name
        assert {Image.open(p).size for p in files} == {(32, 32)}, name  # the 8-pixel imports fitted to the run's size
    assert all(f"| {name} |" in (out / "report.md").read_text() for name in metrics)


def test_the_arguments_are_checked_before_the_prompts_are_read(root, tmp_path, monkeypatch):
    # a MUGE TSV carries its images: a typo must not wait for it to be read
    import clipgen.comparison.prompts as prompts_module

    def never(path):
        raise AssertionError("the prompts were read before the arguments were checked")

    monkeypatch.setattr(prompts_module, "read_prompts", never)
    with pytest.raises(SystemExit, match="nothing to compare"):
        clipgen_main(compare(root, tmp_path / "cmp"))
