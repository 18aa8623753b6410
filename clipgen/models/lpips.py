"""LPIPS perceptual distance (Zhang et al. 2018) with VGG16 features, from a local weights file.

Nothing is downloaded. The weights file is one safetensors file holding the VGG16 convolutions
under `vgg.features.{i}.*` (torchvision's layer indices) and the five linear heads under
`lin{k}.model.1.weight` (the `lpips` package's names). `clipgen lpips-weights` builds it from
torchvision's `vgg16-397923af.pth` and the `lpips` package's `weights/v0.1/vgg.pth`.

The module is a frozen loss, kept out of every checkpoint (taming saves it inside its model).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from clipgen.models.weights import load_state_strict

# VGG16 "D": channel counts, "M" for max-pool. LPIPS taps the ReLU after each block's last conv.
_VGG16_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_TAP_AFTER = (3, 8, 15, 22, 29)  # indices into `features` of relu1_2 ... relu5_3
TAP_CHANNELS = (64, 128, 256, 512, 512)

MISSING_WEIGHTS_HELP = (
    "LPIPS needs VGG16 and linear-head weights in one local safetensors file. Build it once with\n"
    "  clipgen lpips-weights --vgg16 vgg16-397923af.pth --lin vgg.pth --out lpips_vgg16.safetensors\n"
    "(torchvision's ImageNet VGG16 and the lpips package's weights/v0.1/vgg.pth), then set\n"
    "loss.perceptual_weights to its path, or set loss.perceptual_weight: 0 to train without LPIPS."
)


def vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in _VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_ch, item, 3, padding=1), nn.ReLU(inplace=False)]
            in_ch = item
    return nn.Sequential(*layers[: _TAP_AFTER[-1] + 1])


class _LinearHead(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        # index 0 is the (unused at eval) dropout of the lpips package, kept for its key names
        self.model = nn.Sequential(nn.Dropout(0.0), nn.Conv2d(channels, 1, 1, bias=False))


class _VGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = vgg16_features()


class LPIPS(nn.Module):
    def __init__(self):
        super().__init__()
        # the lpips package's input scaling, applied to images in [-1, 1]
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.vgg = _VGG()
        for k, channels in enumerate(TAP_CHANNELS):
            setattr(self, f"lin{k}", _LinearHead(channels))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path | None) -> "LPIPS":
        from safetensors.torch import load_file

        if path is None or not Path(path).is_file():
            raise FileNotFoundError(f"LPIPS weights not found: {path}\n{MISSING_WEIGHTS_HELP}")
        model = cls()
        load_state_strict(model, load_file(str(path)), source=str(path))
        return model

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.vgg.features):
            h = layer(h)
            if i in _TAP_AFTER:
                feats.append(h)
        return feats

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-image distance [B] between images a and b in [-1, 1]."""
        total = 0.0
        for k, (fa, fb) in enumerate(zip(self.taps(a), self.taps(b))):
            # unit-normalise along channels, as LPIPS does (its eps is 1e-10)
            fa = fa / (fa.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            head = getattr(self, f"lin{k}").model[1]
            total = total + head((fa - fb).pow(2)).mean(dim=(1, 2, 3))
        return total


def _load_state(path: str | Path, flag: str) -> dict[str, torch.Tensor]:
    from clipgen.engine.unreadable import why_unreadable

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a state dict
        raise ValueError(f"{flag} {path} is not a readable torch state dict: {why_unreadable(Path(path), err)}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{flag} {path} holds a {type(state).__name__}, not a state dict")
    return state


def convert_lpips_weights(vgg16_path: str | Path, lin_path: str | Path, out_path: str | Path) -> None:
    """Combine torchvision's VGG16 weights and lpips' linear heads into one safetensors file."""
    from safetensors.torch import save_file

    from clipgen.engine.atomic import atomic_write

    vgg, lin = _load_state(vgg16_path, "--vgg16"), _load_state(lin_path, "--lin")
    state = {f"vgg.{k}": v for k, v in vgg.items() if k.startswith("features.")}
    state = {k: v for k, v in state.items() if int(k.split(".")[2]) <= _TAP_AFTER[-1]}
    state.update({k: v for k, v in lin.items() if k.startswith("lin")})
    model = LPIPS()
    load_state_strict(model, state, source=f"{vgg16_path} + {lin_path}")  # checks before writing
    with atomic_write(out_path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
