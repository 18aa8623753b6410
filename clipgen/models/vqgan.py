"""The VQGAN: encoder -> 1x1 conv -> vector quantiser -> 1x1 conv -> decoder.

Parameter names are taming-transformers' (`encoder.*`, `quant_conv.*`, `quantize.embedding.weight`,
`post_quant_conv.*`, `decoder.*`), so taming's checkpoints load directly
(`clipgen.formats.taming.load_taming_vqgan`, which stands above this file). The native format is a
directory with `config.json` and `model.safetensors` (`save_pretrained`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from clipgen.config import from_dict, to_dict
from clipgen.models.autoencoder import Decoder, Encoder
from clipgen.models.patch_encoder import PatchEncoder
from clipgen.models.quantize import QuantizerConfig, QuantizerOutput, VectorQuantizer
from clipgen.models.weights import CONFIG_NAME, load_state_strict, read_model_dir, save_model_dir

FORMAT_TAG = "clipgen-vqgan"


@dataclass
class VQGANConfig:
    resolution: int = 256
    in_channels: int = 3
    out_ch: int = 3
    ch: int = 128
    ch_mult: list[int] = field(default_factory=lambda: [1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    attn_resolutions: list[int] = field(default_factory=lambda: [16])
    dropout: float = 0.0
    z_channels: int = 256
    embed_dim: int = 256
    n_embed: int = 16384
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    # taming's encoder lets every code see the whole image (middle attention, GroupNorm
    # statistics), so one plain background patch takes dozens of codes depending on what else is
    # in the picture. A local encoder (no attention, no normalisation) makes a code a function of
    # its neighbourhood only (the decoder keeps its attention). Off for taming weights.
    local_encoder: bool = False
    # a patch encoder goes further: a code is a function of its own f×f patch only
    # (models/patch_encoder.py), so equal patches share one code
    patch_encoder: bool = False
    # GroupNorm's eps: taming's 1e-6; HFAiLab/clip-gen's VQGAN keeps torch's default 1e-5
    norm_eps: float = 1e-6

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def token_grid(self) -> int:
        """Side of the token grid for images of side `resolution`."""
        return self.resolution // self.downsample_factor


class VQGAN(nn.Module):
    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.config = config
        shared = dict(
            ch=config.ch,
            ch_mult=config.ch_mult,
            num_res_blocks=config.num_res_blocks,
            attn_resolutions=config.attn_resolutions,
            resolution=config.resolution,
            z_channels=config.z_channels,
            dropout=config.dropout,
            norm_eps=config.norm_eps,
        )
        if config.patch_encoder and config.local_encoder:
            raise ValueError("choose one of model.local_encoder and model.patch_encoder")
        if config.patch_encoder:
            width, depth = config.ch * config.ch_mult[-1], config.num_res_blocks + 1
            self.encoder = PatchEncoder(config.in_channels, config.downsample_factor, width, depth, config.z_channels)
        else:
            self.encoder = Encoder(in_channels=config.in_channels, local=config.local_encoder, **shared)
        self.decoder = Decoder(out_ch=config.out_ch, **shared)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.quantize = VectorQuantizer(config.n_embed, config.embed_dim, config.quantizer)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    # --- the model -----------------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> QuantizerOutput:
        """Images in [-1, 1], NCHW -> quantised codes, VQ loss and indices."""
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(codes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        quantized = self.encode(x)
        return self.decode(quantized.quantized), quantized

    @torch.no_grad()
    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], NCHW -> LongTensor[B, h, w] of codebook indices."""
        return self.encode(x).indices

    @torch.no_grad()
    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """LongTensor[B, h, w] -> images Tensor[B, 3, H, W] (nominally in [-1, 1])."""
        return self.decode(self.quantize.indices_to_codes(indices))

    # --- native format ---------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> None:
        save_model_dir(self, directory, FORMAT_TAG, to_dict(self.config))

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str = "cpu") -> "VQGAN":
        meta, state = read_model_dir(directory, FORMAT_TAG, "VQGAN", map_location)
        model = cls(from_dict(VQGANConfig, meta))
        load_state_strict(model, state, source=str(directory))
        return model


def vqgan_model_dir(path: str | Path) -> Path:
    """A VQGAN run directory's exported model/, or the given save_pretrained directory itself."""
    path = Path(path)
    return path / "model" if (path / "model" / CONFIG_NAME).is_file() else path
