"""`clipgen import clip-gen`: HFAiLab/clip-gen's released checkpoints as a clipgen run, checked
against what clip-gen's own code computes from the tiny checkpoints in
tests/fixtures/clipgen_release/ (made by tests/fixtures/make_clipgen_reference.py)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from clipgen.cli import main as clipgen_main
from clipgen.models.gpt import load_gpt
from clipgen.models.token_pick import filter_logits
from clipgen.models.vqgan import VQGAN
from import_helpers import CLIP_GEN as FIXTURES, TOLERANCE, assert_greedy_reproduces, assert_vqgan_reproduces


@pytest.fixture(scope="module")
def reference():
    return load_file(str(FIXTURES / "reference.safetensors"))


@pytest.fixture(scope="module")
def clip512(tmp_path_factory):
    """A random toy CLIP with clip-gen's 512-d embeddings, to read prompts for the imported run."""
    from clipgen.encoders.toy_clip import ToyClip, ToyClipConfig
    from clipgen.train.toy_clip import caption_characters

    directory = tmp_path_factory.mktemp("clip512")
    torch.manual_seed(0)
    ToyClip(ToyClipConfig(dim=512, image_channels=16, text_width=16, text_layers=1, text_heads=2),
            caption_characters()).save_pretrained(directory)  # fmt: skip
    return directory


@pytest.fixture(scope="module")
def run(tmp_path_factory, clip512):
    out = tmp_path_factory.mktemp("imported") / "clip-gen-coco"
    assert clipgen_main(["import", "clip-gen", "--vqgan", str(FIXTURES / "vqgan_coco.pt"), "--gpt", str(FIXTURES / "gpt_coco.pt"),
                         "--gpt-heads", "4", "--clip", f"toy:{clip512}", "--out", str(out)]) == 0  # fmt: skip
    return out


def test_the_vqgan_gives_clip_gens_indices_and_pixels(run, reference):
    vqgan = VQGAN.from_pretrained(run / "vqgan").eval()
    assert vqgan.config.norm_eps == 1e-5 and vqgan.config.quantizer.beta == 0.2
    assert_vqgan_reproduces(vqgan, reference)


def test_the_gpt_gives_clip_gens_logits_and_greedy_tokens(run, reference):
    gpt = load_gpt(run / "model")
    assert gpt.config.head_bias and gpt.config.n_prefix == 1 and gpt.pos_emb.weight.shape[0] == 64
    with torch.no_grad():
        logits = gpt(reference["cond"], reference["tokens"])
    assert logits.dtype == torch.float32 and (logits - reference["logits"]).abs().max() < TOLERANCE
    assert_greedy_reproduces(gpt, reference["cond"], reference["greedy_tokens"])  # clip-gen's sampler at top-k 1


def test_checkpoints_without_their_training_state_import_alike(run, tmp_path):
    """The release files may keep their optimizer state or not: only `model` is read."""
    for name in ("vqgan_coco.pt", "gpt_coco.pt"):
        torch.save({"model": torch.load(FIXTURES / name, weights_only=True)["model"]}, tmp_path / name)
    out = tmp_path / "bare"
    assert clipgen_main(["import", "clip-gen", "--vqgan", str(tmp_path / "vqgan_coco.pt"), "--gpt", str(tmp_path / "gpt_coco.pt"),
                         "--gpt-heads", "4", "--out", str(out)]) == 0  # fmt: skip
    for part in ("model", "vqgan"):
        ours, theirs = load_file(str(out / part / "model.safetensors")), load_file(str(run / part / "model.safetensors"))
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), part


def test_top_k_and_top_p_keep_what_clip_gens_filter_keeps(reference):
    settings = json.loads((FIXTURES / "hparams.json").read_text())["reference"]["filter_settings"]
    for setting in settings:
        ours = filter_logits(reference["filter_input"], top_k=setting["top_k"] or 0, top_p=setting["top_p"])
        theirs = reference[setting["name"]]
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs)), setting
        assert torch.equal(ours[~torch.isinf(ours)], theirs[~torch.isinf(theirs)]), setting


def test_the_run_dir_is_a_clipgen_run(run, tmp_path, reference):
    import sample
    from clipgen.pipeline import ClipGenPipeline

    pipe = ClipGenPipeline.from_pretrained(run, device="cpu")
    assert pipe.sampling.top_k == 500 and pipe.sampling.top_p == 0.95 and pipe.sampling.guidance_scale == 1
    images = pipe(["一只猫", "红色圆形"], num_images=2, seed=0)
    assert [len(group) for group in images] == [2, 2] and images[0][0].size == (8, 8)
    # the released sampling recipe: candidates drawn, the CLIP keeps the best
    assert len(pipe("红色圆形", num_images=2, candidates=4, seed=1)[0]) == 2
    # one image per row of a condition, as clip-gen's sampler takes it
    assert len(pipe.generate(reference["cond"], seed=0, temperature=0)) == 3
    sample.main(["--ckpt", str(run), "--prompt", "红色圆形", "--num-images", "2", "--seed", "0", "--out", str(tmp_path / "s")])
    assert {"0000_0.png", "0000_1.png"} <= {p.name for p in (tmp_path / "s").glob("*.png")}
    provenance = json.loads((run / "imported.json").read_text())
    assert provenance["format"] == "HFAiLab/clip-gen" and provenance["gpt_heads"] == 4


def _meta_state(section: str) -> dict[str, torch.Tensor]:
    """The released files' keys and shapes (shapes_release.txt), as meta tensors (no memory); the
    causal masks real, since the converter checks them."""
    state, inside = {}, False
    for line in (FIXTURES / "shapes_release.txt").read_text().splitlines():
        if line.startswith("#"):
            inside = section in line
            continue
        if inside and line.strip():
            key, shape, dtype = line.split()
            dims = [] if shape == "scalar" else [int(d) for d in shape.split("x")]
            if key.endswith(".mask"):
                state[key] = torch.ones(dims, dtype=torch.bool).triu(1)
            else:
                state[key] = torch.empty(dims, dtype=getattr(torch, dtype), device="meta")
    return state


def test_the_released_key_lists_map_onto_the_released_architectures():
    from clipgen.formats.clip_gen import (NORM_EPS, QUANTIZER, clip_gen_gpt_config, rename_clip_gen_gpt,
                                          rename_clip_gen_vqgan)  # fmt: skip
    from clipgen.formats.taming import taming_config_from_state
    from clipgen.models.gpt import ConditionTransformer
    from clipgen.models.vqgan import VQGANConfig

    def shapes(state):
        return {k: tuple(v.shape) for k, v in state.items()}

    vq_state = rename_clip_gen_vqgan(_meta_state("VQGAN(16384, 256)"), "release")
    config = taming_config_from_state(vq_state, 16, "release", norm_eps=NORM_EPS, quantizer=QUANTIZER)
    assert config == VQGANConfig(norm_eps=NORM_EPS, quantizer=QUANTIZER)  # taming's f16/16384 at 256 px
    with torch.device("meta"):
        assert shapes(vq_state) == shapes(VQGAN(config).state_dict())

    gpt_state = _meta_state("gpt2_medium")
    config = clip_gen_gpt_config(gpt_state, None, "release")  # the head count defaults to gpt2_medium's
    assert (config.n_layer, config.n_embd, config.n_head, config.block_size, config.vocab_size) == (24, 1024, 16, 256, 16384)
    renamed = rename_clip_gen_gpt(gpt_state, config, "release")
    with torch.device("meta"):
        model = ConditionTransformer(config)
    assert shapes(renamed) == shapes(model.state_dict())
    assert sum(v.numel() for k, v in renamed.items() if k != "null_prefix") == pytest.approx(336.7e6, rel=1e-3)
