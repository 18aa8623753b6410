"""Every bad input is one clear line: `PROG: error: ...` on stderr, exit status 2, no traceback,
nothing written; a genuine bug keeps its traceback (issue 11).

Most cases run in-process (`clipgen.cli.main(..., exit_on_error=True)` and `sample.main` do what
the command line does); a few real subprocesses check that the scripts themselves are wired up.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipgen.cli import main as clipgen_main
from clipgen.data.shapes_shards import make_shapes
from clipgen.config import ConfigError
from clipgen.data.tokens import write_token_shard
from data_helpers import save_tiny_stage_models

ROOT = Path(__file__).parent.parent
GPT_CONFIG = ROOT / "configs/gpt/shapes32.yaml"
CLIP_CONFIG = ROOT / "configs/clip/toy_shapes32.yaml"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Image shards, a tiny VQGAN and toy CLIP, token shards that fit them, and a GPT run trained on them."""
    root = tmp_path_factory.mktemp("bad_inputs")
    make_shapes(root / "images", 4, size=32, shard_size=4)
    save_tiny_stage_models(root)  # root/vq (a VQGAN run dir), root/clip
    rng = np.random.default_rng(0)
    samples = [{"key": f"{i:08d}", "codes": rng.integers(0, 64, (8, 8)).astype(np.int16),
                "clip": rng.standard_normal(16).astype(np.float32), "meta": {}} for i in range(4)]  # fmt: skip
    write_token_shard(root / "tokens" / "shard-000000.tar", samples)
    # the command line every train-gpt case breaks one setting of: it works as it is
    good = gpt_command(root, root / "gpt-run", "run.max_steps=1", "run.image_every=0", f"condition.clip=toy:{root / 'clip'}")
    assert clipgen_main(good, exit_on_error=True) == 0
    (root / "not-utf8.txt").write_bytes("红色圆形\n".encode("gbk"))
    return root


def gpt_command(root: Path, out: Path, *settings: str) -> list[str]:
    """train-gpt on the fixture's tokens, with `settings` (KEY=VALUE) last, so they win."""
    base = [f"run.out_dir={out}", f"data.train={root / 'tokens'}", "data.val=", "model.vocab_size=64",
            "model.cond_dim=16", "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "condition.clip=",
            f"condition.vqgan={root / 'vq'}"]  # fmt: skip
    return ["train-gpt", "--config", str(GPT_CONFIG), "--set", *base, *settings]


def assert_one_line(err: str, prog: str, *names: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    for name in names:
        assert name in lines[0], (name, lines[0])


def refused(capsys, run, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# (case id, argv after `clipgen`, what the line must name); {root} and {out} are filled in. Each is
# found before anything is written: the config as it is read, the rest as the stage's task starts.
TRAIN_CASES = [
    ("missing config file", ["train-gpt", "--config", "{root}/none.yaml"], ["none.yaml", "not found"]),
    ("unknown key", "gpt:run.max_stepz=3", ["run.max_stepz", "valid keys"]),
    ("wrong type", "gpt:run.max_steps=abc", ["run.max_steps", "integer"]),
    ("bad yaml", "gpt:run.max_steps=[1", ["run.max_steps", "YAML"]),
    ("max_steps 0", "gpt:run.max_steps=0", ["run.max_steps", "≥ 1"]),
    ("max_steps -1", "gpt:run.max_steps=-1", ["run.max_steps", "-1"]),
    ("ckpt_every -1", "gpt:run.ckpt_every=-1", ["run.ckpt_every"]),
    ("grad_accum 0", "gpt:run.grad_accum=0", ["run.grad_accum"]),
    ("sample temperature -1", "gpt:sample.temperature=-1", ["sample.temperature"]),
    ("sample top_k -1", "gpt:sample.top_k=-1", ["sample.top_k"]),
    ("sample blank prompt", "gpt:sample.prompts=[' ']", ["sample.prompts"]),
    ("resume a non-run dir", ["train-gpt", "--resume", "{root}"], ["--resume", "not a run directory"]),
    ("missing token shards", "gpt:data.train={root}/none", ["data.train", "none"]),
    ("image shards as token shards", "gpt:data.train={root}/images", ["look like image shards", "clipgen extract"]),
    ("vqgan names a GPT run", "gpt:condition.vqgan={root}/gpt-run", ["condition.vqgan", "clipgen-gpt", "not a VQGAN"]),
    ("vqgan names no model", "gpt:condition.vqgan={root}/images", ["condition.vqgan", "holds no VQGAN"]),
    ("toy clip: missing shards", ["train-toy-clip", "--config", str(CLIP_CONFIG), "--set", "run.out_dir={out}",
                                  "data.shards={root}/none"], ["none"]),  # fmt: skip
    ("vqgan: missing shards", ["train-vqgan", "--config", str(ROOT / "configs/vqgan/shapes32.yaml"), "--set",
                               "run.out_dir={out}", "data.shards={root}/none"], ["none"]),  # fmt: skip
    ("extract: missing vqgan", ["extract", "--vqgan", "{root}/none", "--clip", "toy:{root}/clip", "--data",
                                "{root}/images", "--out", "{out}"], ["none", "VQGAN"]),  # fmt: skip
    ("extract: missing images", ["extract", "--vqgan", "{root}/vq", "--clip", "toy:{root}/clip", "--data",
                                 "{root}/none", "--out", "{out}"], ["none"]),  # fmt: skip
    ("lpips-weights: missing input", ["lpips-weights", "--vgg16", "{root}/none.pth", "--lin", "{root}/none.pth",
                                      "--out", "{out}/lpips.safetensors"], ["--vgg16", "none.pth"]),  # fmt: skip
    ("lpips-weights: not a torch file", ["lpips-weights", "--vgg16", "{root}/not-utf8.txt", "--lin",
                                         "{root}/not-utf8.txt", "--out", "{out}/lpips.safetensors"],
     ["--vgg16", "not-utf8.txt", "not a readable torch state dict"]),  # fmt: skip
    ("compare: prompts not UTF-8", ["compare", "--runs", "{root}/gpt-run", "--prompts", "{root}/not-utf8.txt",
                                    "--out", "{out}"], ["--prompts", "not-utf8.txt", "UTF-8"]),  # fmt: skip
    ("compare: top-p 0", ["compare", "--runs", "{root}/gpt-run", "--prompts", "{root}/none.txt", "--out", "{out}",
                          "--top-p", "0"], ["--top-p", "(0, 1]"]),  # fmt: skip
]


@pytest.mark.parametrize("case, argv, names", TRAIN_CASES, ids=[case[0] for case in TRAIN_CASES])
def test_a_bad_command_line_is_one_line_and_status_2(inputs, tmp_path, capsys, case, argv, names):
    out = tmp_path / "out"
    if isinstance(argv, str):  # "gpt:KEY=VALUE": the working train-gpt command line with one bad setting
        argv = gpt_command(inputs, out, argv.removeprefix("gpt:").format(root=inputs))
    argv = [a.format(root=inputs, out=out) for a in argv]
    err = refused(capsys, lambda a: clipgen_main(a, exit_on_error=True), argv)
    assert_one_line(err, f"clipgen {argv[0]}", *names)
    assert not out.exists()


SAMPLE_CASES = [
    ("missing run dir", ["--ckpt", "{root}/none", "--prompt", "红色圆形"], ["none", "not a condition-transformer run"]),
    ("prompts file not UTF-8", ["--prompts-file", "{root}/not-utf8.txt"], ["--prompts-file", "not-utf8.txt", "UTF-8"]),
    ("prompts file missing", ["--prompts-file", "{root}/none.txt"], ["--prompts-file", "none.txt"]),
    ("top-p 0", ["--prompt", "红色圆形", "--top-p", "0"], ["--top-p", "(0, 1]"]),
    ("guidance nan", ["--prompt", "红色圆形", "--guidance-scale", "nan"], ["--guidance-scale", "nan"]),
    ("guidance inf", ["--prompt", "红色圆形", "--guidance-scale", "inf"], ["--guidance-scale", "inf"]),
    ("temperature -1", ["--prompt", "红色圆形", "--temperature", "-1"], ["--temperature", "-1"]),
    ("top-k -1", ["--prompt", "红色圆形", "--top-k", "-1"], ["--top-k", "-1"]),
    ("empty prompt", ["--prompt", "  "], ["prompt 0 is empty"]),
    ("no images", ["--prompt", "红色圆形", "--num-images", "0"], ["num_images"]),
]


@pytest.mark.parametrize("argv, names", [case[1:] for case in SAMPLE_CASES], ids=[case[0] for case in SAMPLE_CASES])
def test_sample_py_refuses_bad_input_in_one_line(inputs, tmp_path, capsys, argv, names):
    import sample

    argv = [a.format(root=inputs) for a in argv]
    if "--ckpt" not in argv:
        argv = ["--ckpt", str(inputs / "gpt-run"), *argv]
    err = refused(capsys, sample.main, [*argv, "--out", str(tmp_path / "samples")])
    assert_one_line(err, "sample.py", *names)
    assert not (tmp_path / "samples").exists()


def test_the_pipeline_names_a_prompt_that_is_not_a_string():
    from clipgen.pipeline import check_prompts

    with pytest.raises(ValueError, match="prompt 1 is not a string but int"):
        check_prompts(["红色圆形", 5])
    with pytest.raises(ValueError, match="no prompts"):
        check_prompts([])


def test_a_bug_keeps_its_traceback_and_python_callers_get_the_exception(inputs, tmp_path, monkeypatch):
    from clipgen.commands import lpips_weights

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(lpips_weights, "run", broken)
    with pytest.raises(KeyError, match="a bug"):
        clipgen_main(["lpips-weights", "--vgg16", "a", "--lin", "b", "--out", "c"], exit_on_error=True)
    # called with argv, an input error is the exception itself (what a Python caller can handle)
    with pytest.raises(ConfigError, match="run.max_steps"):
        clipgen_main(gpt_command(inputs, tmp_path / "out", "run.max_steps=0"))


def test_the_scripts_print_one_line_and_exit_2(inputs, tmp_path):
    """Real processes, as a user runs them: the scripts' and `python -m clipgen`'s own wiring."""
    commands = {
        "train_gpt.py": (["train_gpt.py", *gpt_command(inputs, tmp_path / "gpt", "run.max_steps=0")[1:]], "run.max_steps"),
        "train_vqgan.py": (["train_vqgan.py", "--config", str(tmp_path / "none.yaml")], "none.yaml"),
        "clipgen train-toy-clip": (["-m", "clipgen", "train-toy-clip", "--config", str(CLIP_CONFIG), "--set",
                                    f"run.out_dir={tmp_path / 'toy'}", f"data.shards={inputs / 'none'}"], "none"),
        "sample.py": (["sample.py", "--ckpt", str(inputs / "gpt-run"), "--prompts-file", str(inputs / "not-utf8.txt"),
                       "--out", str(tmp_path / "samples")], "not-utf8.txt"),
    }  # fmt: skip
    # started together: most of each one's time is importing torch
    running = {prog: subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for prog, (argv, _) in commands.items()}  # fmt: skip
    for prog, process in running.items():
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2 and len(err.splitlines()) == 1, (prog, err)  # nothing else on stderr
        assert_one_line(err, prog, commands[prog][1])
    assert not (tmp_path / "gpt").exists() and not (tmp_path / "samples").exists()
    assert not (tmp_path / "toy" / "checkpoints").exists()


def test_a_run_dir_in_use_by_another_process_is_one_line(inputs, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom clipgen.engine.run_lock import lock_run_dir\n"
                               "lock_run_dir(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
                               str(inputs / "gpt-run")], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = refused(capsys, lambda a: clipgen_main(a, exit_on_error=True), ["train-gpt", "--resume", str(inputs / "gpt-run")])
    finally:
        holder.kill()
        holder.wait()
    assert_one_line(err, "clipgen train-gpt", "in use by another training process", f"pid {holder.pid}")


# --- clipgen import: the seed systems' checkpoints, broken one way each ------------------------


@pytest.fixture(scope="module")
def seed_inputs(tmp_path_factory):
    """Broken copies of the clip-gen and EasyNLP fixtures, one fault each."""
    import shutil

    import torch

    from import_helpers import CLIP_GEN, make_painter_dir

    root = tmp_path_factory.mktemp("seed_inputs")
    for name in ("vqgan_coco.pt", "gpt_coco.pt"):
        data = (CLIP_GEN / name).read_bytes()
        (root / f"truncated-{name}").write_bytes(data[: len(data) // 2])
    gpt = torch.load(CLIP_GEN / "gpt_coco.pt", weights_only=True)
    gpt["model"]["blocks.0.encoder.extra.weight"] = torch.zeros(2)
    torch.save(gpt, root / "gpt-unknown-key.pt")
    (root / "hello.txt").write_text("hello")
    old_format = root / "old-format.pt"  # torch.save's format before 1.6: a bare pickle
    torch.save(gpt, old_format, _use_new_zipfile_serialization=False)
    # cut inside the pickle's "GLOBAL collections.OrderedDict", which then reads as an unsafe global
    pickled = old_format.read_bytes()
    old_format.write_bytes(pickled[: pickled.index(b"collections\nOrderedDict") + len(b"collections\nOrdere")])
    painter = make_painter_dir(root / "painter")

    def variant(name, change_state=None, change_dir=None):
        directory = root / name
        shutil.copytree(painter, directory)
        if change_state:
            state = torch.load(directory / "pytorch_model.bin", weights_only=True)
            change_state(state)
            torch.save(state, directory / "pytorch_model.bin")
        if change_dir:
            change_dir(directory)

    variant("no-vocab", change_dir=lambda d: (d / "vocab.txt").unlink())
    variant("unknown-key", lambda s: s.update({"transformer.blocks.0.attn.extra.weight": torch.zeros(2)}))
    variant("missing-key", lambda s: s.pop("transformer.ln_f.bias"))
    variant("unmasked", lambda s: s["transformer.blocks.1.attn.mask"][..., :32, :32].fill_(1))
    variant("truncated", change_dir=lambda d: (d / "pytorch_model.bin").write_bytes((d / "pytorch_model.bin").read_bytes()[:5000]))
    variant("config-key", change_dir=lambda d: (d / "config.json").write_text('{"n_layer": 2, "n_layerz": 2}'))
    variant("config-list", change_dir=lambda d: (d / "config.json").write_text("[1, 2]"))
    (root / "not-empty").mkdir()
    (root / "not-empty" / "keep.txt").write_text("mine")
    return root


CG = ["import", "clip-gen", "--gpt-heads", "4"]
IMPORT_CASES = [
    ("GPT as --vqgan", [*CG, "--vqgan", "{cg}/gpt_coco.pt", "--gpt", "{cg}/gpt_coco.pt"], ["--vqgan", "GPT", "pass it as --gpt"]),
    ("VQGAN as --gpt", [*CG, "--vqgan", "{cg}/vqgan_coco.pt", "--gpt", "{cg}/vqgan_coco.pt"], ["--gpt", "VQGAN", "--vqgan"]),
    ("EasyNLP dir to clip-gen", [*CG, "--vqgan", "{cg}/vqgan_coco.pt", "--gpt", "{root}/painter"],
     ["--gpt", "EasyNLP checkpoint directory", "clipgen import easynlp"]),  # fmt: skip
    ("EasyNLP weights to clip-gen", [*CG, "--vqgan", "{root}/painter/pytorch_model.bin", "--gpt", "{cg}/gpt_coco.pt"],
     ["--vqgan", "EasyNLP", "clipgen import easynlp"]),  # fmt: skip
    ("truncated GPT", [*CG, "--vqgan", "{cg}/vqgan_coco.pt", "--gpt", "{root}/truncated-gpt_coco.pt"],
     ["--gpt", "truncated-gpt_coco.pt", "truncated"]),  # fmt: skip
    ("truncated VQGAN", [*CG, "--vqgan", "{root}/truncated-vqgan_coco.pt", "--gpt", "{cg}/gpt_coco.pt"],
     ["--vqgan", "truncated-vqgan_coco.pt", "truncated"]),  # fmt: skip
    ("text file as --gpt", [*CG, "--vqgan", "{cg}/vqgan_coco.pt", "--gpt", "{root}/hello.txt"],
     ["--gpt", "hello.txt", "not a PyTorch checkpoint"]),  # fmt: skip
    ("truncated old-format GPT", [*CG, "--vqgan", "{cg}/vqgan_coco.pt", "--gpt", "{root}/old-format.pt"],
     ["--gpt", "old-format.pt", "truncated"]),  # fmt: skip
    ("--clip without a kind", [*CG, "--vqgan", "{cg}/vqgan_coco.pt", "--gpt", "{cg}/gpt_coco.pt", "--clip", "/weights/clip"],
     ["--clip", "KIND:PATH"]),  # fmt: skip
    ("--clip of an unknown kind", [*CG, "--vqgan", "{cg}/vqgan_coco.pt", "--gpt", "{cg}/gpt_coco.pt", "--clip", "openclip:/w.bin"],
     ["--clip", "unknown CLIP kind 'openclip'"]),  # fmt: skip
    ("unknown GPT key", [*CG, "--vqgan", "{cg}/vqgan_coco.pt", "--gpt", "{root}/gpt-unknown-key.pt"],
     ["gpt-unknown-key.pt", "blocks.0.encoder.extra.weight"]),  # fmt: skip
    ("heads do not divide", ["import", "clip-gen", "--gpt-heads", "5", "--vqgan", "{cg}/vqgan_coco.pt", "--gpt",
                             "{cg}/gpt_coco.pt"], ["--gpt-heads 5", "32"]),  # fmt: skip
    ("clip-gen file to easynlp", ["import", "easynlp", "{cg}/gpt_coco.pt"], ["gpt_coco.pt", "is a file", "clipgen import clip-gen"]),
    ("missing vocab", ["import", "easynlp", "{root}/no-vocab"], ["no-vocab", "vocab.txt"]),
    ("unknown key", ["import", "easynlp", "{root}/unknown-key"], ["transformer.blocks.0.attn.extra.weight"]),
    ("missing key", ["import", "easynlp", "{root}/missing-key"], ["transformer.ln_f.bias"]),
    ("unmasked text", ["import", "easynlp", "{root}/unmasked"], ["attn.mask", "causal"]),
    ("truncated weights", ["import", "easynlp", "{root}/truncated"], ["pytorch_model.bin", "truncated"]),
    ("unknown config key", ["import", "easynlp", "{root}/config-key"], ["config.json: unknown config key n_layerz"]),
    ("config not an object", ["import", "easynlp", "{root}/config-list"], ["config.json", "JSON object", "list"]),
    ("ARTIST without entities", ["import", "easynlp", "{artist}"], ["ARTIST", "--entity2vec", "--no-knowledge"]),
    ("entities for pai-painter", ["import", "easynlp", "{root}/painter", "--entity2vec", "{artist}/entity2vec.pt",
                                  "--entity2id", "{artist}/entity2id.txt"], ["not an ARTIST checkpoint"]),  # fmt: skip
    ("entity ids as vectors", ["import", "easynlp", "{artist}", "--entity2vec", "{artist}/entity2id.txt",
                               "--entity2id", "{artist}/entity2id.txt"], ["--entity2vec", "entity2id.txt"]),  # fmt: skip
    ("knowledge and no knowledge", ["import", "easynlp", "{artist}", "--no-knowledge", "--entity2vec",
                                    "{artist}/entity2vec.pt", "--entity2id", "{artist}/entity2id.txt"], ["--no-knowledge"]),  # fmt: skip
    ("half the entity files", ["import", "easynlp", "{artist}", "--entity2id", "{artist}/entity2id.txt"],
     ["--entity2vec", "--entity2id"]),  # fmt: skip
    ("out not empty", ["import", "easynlp", "{root}/painter", "--out", "{root}/not-empty"], ["not-empty", "not empty"]),
]


@pytest.mark.parametrize("argv, names", [case[1:] for case in IMPORT_CASES], ids=[case[0] for case in IMPORT_CASES])
def test_a_bad_import_is_one_line_and_writes_nothing(seed_inputs, tmp_path, capsys, argv, names):
    from import_helpers import ARTIST, CLIP_GEN

    out = tmp_path / "run"
    argv = [a.format(root=seed_inputs, cg=CLIP_GEN, artist=ARTIST) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    err = refused(capsys, lambda a: clipgen_main(a, exit_on_error=True), argv)
    assert_one_line(err, "clipgen import", *names)
    assert list(tmp_path.iterdir()) == []  # not the run, nor a temporary directory beside it
    assert [p.name for p in (seed_inputs / "not-empty").iterdir()] == ["keep.txt"]
