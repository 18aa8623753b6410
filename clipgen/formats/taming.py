"""Loading CompVis/taming-transformers VQGANs: a Lightning `.ckpt` plus its YAML config.

`load_taming_vqgan(ckpt, config)` gives a clipgen `VQGAN`, whose parameter names are taming's, so
the weights load as they are.

The YAML's `model.params` carries `embed_dim`, `n_embed` and the encoder/decoder `ddconfig`.
The checkpoint's `state_dict` holds the model under taming's names, plus the discriminator and
LPIPS under `loss.*`; those are training-only and dropped on purpose. Taming's quantiser is its
legacy form (β on the codebook term), which only matters if the model is trained further.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from clipgen.config import ConfigError
from clipgen.formats.torch_file import read_torch_file
from clipgen.models.quantize import QuantizerConfig
from clipgen.models.vqgan import VQGAN, VQGANConfig
from clipgen.models.weights import load_state_strict

_DDCONFIG_KEYS = (
    "resolution", "in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks",
    "attn_resolutions", "dropout", "z_channels",
)  # fmt: skip


def taming_config(config_path: str | Path) -> VQGANConfig:
    """The VQGANConfig described by a taming YAML file."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"taming config not found: {config_path}")
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    try:
        params = raw["model"]["params"]
        dd = params["ddconfig"]
    except (KeyError, TypeError):
        raise ConfigError(f"{config_path}: expected model.params.ddconfig as in taming's configs") from None
    if dd.get("double_z", False):
        raise ConfigError(f"{config_path}: double_z: true is a KL autoencoder, not a VQGAN")
    missing = [k for k in _DDCONFIG_KEYS if k not in dd and k != "dropout"]
    if missing:
        raise ConfigError(f"{config_path}: ddconfig lacks {', '.join(missing)}")
    ddconfig = {k: dd[k] for k in _DDCONFIG_KEYS if k in dd}
    ddconfig["ch_mult"] = list(ddconfig["ch_mult"])
    ddconfig["attn_resolutions"] = list(ddconfig["attn_resolutions"])
    return VQGANConfig(
        **ddconfig,
        embed_dim=int(params["embed_dim"]),
        n_embed=int(params["n_embed"]),
        quantizer=QuantizerConfig(beta=0.25, legacy_beta=True),
    )


def read_lightning_state_dict(ckpt_path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a Lightning checkpoint, without executing pickled code."""
    # Some Lightning checkpoints pickle callback objects beside the weights; refusing them is safer
    # than executing them. Saving `ckpt["state_dict"]` alone, once, in a trusted environment makes
    # the file loadable.
    ckpt = read_torch_file(ckpt_path, "taming checkpoint", unsafe_hint=(
        ". In an environment you trust, re-save just the weights: "
        "torch.save({'state_dict': torch.load(p, weights_only=False)['state_dict']}, out)"))  # fmt: skip
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{ckpt_path} has no state_dict")
    return state


def load_taming_vqgan(ckpt_path: str | Path | None, config_path: str | Path) -> VQGAN:
    """A taming-transformers VQGAN from its Lightning checkpoint and YAML config (no checkpoint:
    the architecture with fresh weights)."""
    model = VQGAN(taming_config(config_path))
    if ckpt_path is not None:
        state = {k: v for k, v in read_lightning_state_dict(ckpt_path).items() if not k.startswith("loss.")}
        load_state_strict(model, state, source=str(ckpt_path))
    return model


def taming_config_from_state(state: dict[str, torch.Tensor], token_grid: int, source: str, **options) -> VQGANConfig:
    """The VQGANConfig of a taming-named VQGAN state dict, read from its shapes; `token_grid`, the
    side of the token grid, gives the resolution (the weights do not say what size they were
    trained at). `options` are further VQGANConfig fields (norm_eps, quantizer)."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise ValueError(f"{source} is not a taming-style VQGAN: it has no {key}")
        return tuple(state[key].shape)

    ch, in_channels = shape("encoder.conv_in.weight")[:2]
    shape("encoder.down.0.block.0.conv1.weight")  # a named error for a non-taming state, not max() of nothing
    levels = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.down."))
    ch_mult = [shape(f"encoder.down.{level}.block.0.conv1.weight")[0] // ch for level in range(levels)]
    num_res_blocks = len({k.split(".")[4] for k in state if k.startswith("encoder.down.0.block.")})
    resolution = token_grid * 2 ** (levels - 1)
    attn_resolutions = [resolution // 2**level for level in range(levels) if f"encoder.down.{level}.attn.0.q.weight" in state]
    n_embed, embed_dim = shape("quantize.embedding.weight")
    return VQGANConfig(
        resolution=resolution, in_channels=in_channels, out_ch=shape("decoder.conv_out.weight")[0], ch=ch, ch_mult=ch_mult,
        num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions, z_channels=shape("encoder.conv_out.weight")[0],
        embed_dim=embed_dim, n_embed=n_embed, **options,
    )  # fmt: skip
