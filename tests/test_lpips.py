import pytest
import torch
from safetensors.torch import save_file

from clipgen.models.lpips import LPIPS, convert_lpips_weights


def _fake_sources(tmp_path):
    """Files laid out like torchvision's vgg16 state_dict and the lpips package's vgg.pth."""
    torch.manual_seed(0)
    reference = LPIPS()
    vgg = {k.removeprefix("vgg."): torch.randn_like(v) * 0.1 for k, v in reference.state_dict().items() if k.startswith("vgg.")}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision's head, which LPIPS drops
    lin = {k: torch.rand_like(v) for k, v in reference.state_dict().items() if k.startswith("lin")}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / "lin.pth")
    return tmp_path / "vgg16.pth", tmp_path / "lin.pth"


def test_converted_weights_load_and_measure_distance(tmp_path):
    vgg, lin = _fake_sources(tmp_path)
    convert_lpips_weights(vgg, lin, tmp_path / "lpips.safetensors")
    lpips = LPIPS.from_file(tmp_path / "lpips.safetensors")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert lpips(x, x).abs().max() < 1e-6
    near, far = lpips(x, x + 0.05 * torch.randn_like(x)), lpips(x, torch.rand_like(x) * 2 - 1)
    assert (near > 0).all() and (far > near).all()
    assert not any(p.requires_grad for p in lpips.parameters())


def test_missing_weights_file_says_what_to_provide(tmp_path):
    with pytest.raises(FileNotFoundError, match="clipgen lpips-weights") as err:
        LPIPS.from_file(tmp_path / "absent.safetensors")
    assert "perceptual_weight: 0" in str(err.value)


def test_wrong_weights_file_names_the_keys(tmp_path):
    save_file({"something": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="unexpected keys: something"):
        LPIPS.from_file(tmp_path / "bad.safetensors")
