"""The VQGAN reproduces taming-transformers and round-trips through its native format."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clipgen.config import load_config
from clipgen.formats.taming import load_taming_vqgan
from clipgen.models.vqgan import VQGAN, VQGANConfig
from clipgen.train.vqgan import VQGANTrainConfig

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
TINY = DATA / "taming_tiny"


def reference_shapes() -> dict[str, str]:
    lines = (DATA / "taming_f16_16384_shapes.txt").read_text().splitlines()
    return dict(line.split() for line in lines if line.strip())


def shapes_of(model: torch.nn.Module) -> dict[str, str]:
    return {k: "x".join(map(str, v.shape)) for k, v in model.state_dict().items()}


def test_taming_f16_yaml_builds_the_reference_keys_and_shapes():
    with torch.device("meta"):  # the shapes without allocating 76M parameters
        model = load_taming_vqgan(None, ROOT / "configs/taming/vqgan_f16_16384.yaml")
    assert shapes_of(model) == reference_shapes()


def test_native_f16_config_builds_the_same_architecture():
    cfg = load_config(VQGANTrainConfig, ROOT / "configs/vqgan/f16_16384.yaml")
    with torch.device("meta"):
        model = VQGAN(cfg.model)
    assert shapes_of(model) == reference_shapes()
    assert cfg.model.token_grid == 16


def test_load_taming_vqgan_reproduces_taming_indices_and_pixels():
    ref = load_file(str(TINY / "reference.safetensors"))
    model = load_taming_vqgan(TINY / "model.ckpt", TINY / "config.yaml").eval()
    indices = model.encode_to_indices(ref["input"])
    assert indices.dtype == torch.int64 and indices.shape == ref["indices"].shape
    assert torch.equal(indices, ref["indices"])
    torch.testing.assert_close(model.decode_indices(ref["indices"]), ref["decoded_from_indices"], atol=1e-4, rtol=0)
    xrec, _ = model(ref["input"])
    torch.testing.assert_close(xrec, ref["decoded"], atol=1e-4, rtol=0)


def _write_ckpt(tmp_path, state):
    path = tmp_path / "edited.ckpt"
    torch.save({"state_dict": state}, path)
    return path


def test_load_taming_vqgan_drops_loss_keys_and_names_any_other_mismatch(tmp_path):
    state = torch.load(TINY / "model.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("loss.") for k in state)  # the fixture carries them, as real ckpts do
    missing = {k: v for k, v in state.items() if k != "quant_conv.bias"}
    with pytest.raises(ValueError, match=r"missing keys: quant_conv\.bias"):
        load_taming_vqgan(_write_ckpt(tmp_path, missing), TINY / "config.yaml")
    extra = {**state, "decoder.extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected keys: decoder\.extra\.weight"):
        load_taming_vqgan(_write_ckpt(tmp_path, extra), TINY / "config.yaml")


def test_load_taming_vqgan_wrong_paths_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="taming checkpoint .*no such file"):
        load_taming_vqgan(tmp_path / "none.ckpt", TINY / "config.yaml")
    with pytest.raises(FileNotFoundError, match="taming config not found"):
        load_taming_vqgan(None, tmp_path / "none.yaml")


class PickledCallback:
    """Stands for a Lightning callback object pickled beside the weights."""


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "objects.ckpt"
    torch.save({"state_dict": {}, "callbacks": PickledCallback()}, path)
    with pytest.raises(ValueError, match="not loaded for safety"):
        load_taming_vqgan(path, TINY / "config.yaml")


def tiny_config(**overrides) -> VQGANConfig:
    base = dict(resolution=16, ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], z_channels=8, embed_dim=4, n_embed=32)
    return VQGANConfig(**{**base, **overrides})


def test_save_and_from_pretrained_round_trip(tmp_path):
    model = VQGAN(tiny_config()).eval()
    model.save_pretrained(tmp_path / "vq")
    assert sorted(p.name for p in (tmp_path / "vq").iterdir()) == ["config.json", "model.safetensors"]
    loaded = VQGAN.from_pretrained(tmp_path / "vq").eval()
    assert loaded.config == model.config
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(loaded.encode_to_indices(x), model.encode_to_indices(x))
    assert loaded.encode_to_indices(x).shape == (2, 8, 8)
    assert loaded.decode_indices(loaded.encode_to_indices(x)).shape == (2, 3, 16, 16)


def test_from_pretrained_rejects_weights_of_another_config(tmp_path):
    VQGAN(tiny_config()).save_pretrained(tmp_path / "a")
    VQGAN(tiny_config(n_embed=64)).save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").replace(tmp_path / "a" / "model.safetensors")
    with pytest.raises(ValueError, match=r"shape mismatches: quantize\.embedding\.weight"):
        VQGAN.from_pretrained(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="not a VQGAN directory"):
        VQGAN.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize("local", [False, True])
def test_a_local_encoder_codes_only_see_their_neighbourhood(local):
    torch.manual_seed(0)
    config = VQGANConfig(resolution=128, ch=32, ch_mult=[1, 1, 2], num_res_blocks=1, attn_resolutions=[32],
                         z_channels=8, embed_dim=4, n_embed=16, local_encoder=local)  # fmt: skip
    model = VQGAN(config)
    encoder = model.encoder.eval()
    image = torch.zeros(1, 3, 128, 128)
    changed = image.clone()
    changed[:, :, 112:, 112:] = 1.0  # an object in the far corner
    with torch.no_grad():
        top_left = encoder(image)[..., 0, 0], encoder(changed)[..., 0, 0]
    # taming's encoder: attention and GroupNorm statistics carry the far object into every code
    assert torch.equal(*top_left) == local
    kinds = {type(m).__name__ for m in encoder.modules()}
    assert ("GroupNorm" in kinds or "AttnBlock" in kinds) != local
    assert any(type(m).__name__ == "AttnBlock" for m in model.decoder.up.modules())  # the decoder keeps attn_resolutions


def test_a_patch_encoder_gives_equal_patches_equal_codes():
    torch.manual_seed(0)
    config = VQGANConfig(resolution=32, ch=32, ch_mult=[1, 1, 2], num_res_blocks=1, attn_resolutions=[],
                         z_channels=8, embed_dim=4, n_embed=16, patch_encoder=True)  # fmt: skip
    model = VQGAN(config).eval()
    image = torch.full((1, 3, 32, 32), -0.2)
    image[:, 0, 9:19, 5:15] = 0.8  # an object over several 4×4 patches
    with torch.no_grad():
        codes = model.encode_to_indices(image)[0]
        moved = model.encode_to_indices(torch.roll(image, shifts=(8, 12), dims=(2, 3)))[0]
    assert codes.shape == (8, 8)
    # every plain background patch has one code, wherever the object is
    assert codes[0, 0] == codes[7, 7] == codes[0, 7] == moved[0, 0]
    # moving the object by whole patches moves its codes and nothing else
    assert torch.equal(torch.roll(codes, shifts=(2, 3), dims=(0, 1)), moved)
    with pytest.raises(ValueError, match="one of model.local_encoder and model.patch_encoder"):
        VQGAN(VQGANConfig(resolution=32, ch=32, ch_mult=[1, 2], local_encoder=True, patch_encoder=True))
