"""The VQGAN's convolutional encoder and decoder (taming-transformers' architecture and names).

Resolution levels are indexed from the highest resolution (0) down. The encoder's level i has
`num_res_blocks` residual blocks, an attention block after each of them when the level's
resolution is in `attn_resolutions`, and a downsample except at the last level. The decoder
mirrors it with `num_res_blocks + 1` blocks per level; its `up` list is indexed like the encoder's
levels, so `decoder.up.0` is the highest resolution even though it runs last.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch
from torch import nn

from clipgen.models.blocks import AttnBlock, Downsample, ResnetBlock, Upsample, group_norm, no_norm, swish


class _Level(nn.Module):
    """One resolution level: residual blocks, optional attention after each, optional resampling.

    A plain container so that parameter names read `down.{i}.block.{j}` / `down.{i}.attn.{j}`."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module]):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn) > 0:
                h = self.attn[i](h)
        return h


class _Middle(nn.Module):
    def __init__(self, channels: int, dropout: float, norm=group_norm):
        super().__init__()
        local = norm is no_norm
        self.block_1 = ResnetBlock(channels, channels, dropout, norm)
        self.attn_1 = nn.Identity() if local else AttnBlock(channels, norm)
        self.block_2 = ResnetBlock(channels, channels, dropout, norm)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    def __init__(
        self,
        *,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        in_channels: int,
        resolution: int,
        z_channels: int,
        dropout: float = 0.0,
        local: bool = False,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        # local: no attention and no normalisation, so that a code depends only on the pixels in
        # its receptive field, never on statistics of the whole image (VQGANConfig.local_encoder);
        # attn_resolutions then applies to the decoder only
        norm = no_norm if local else functools.partial(group_norm, eps=norm_eps)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        res, block_in = resolution, ch
        for level, mult in enumerate(ch_mult):
            block_out = ch * mult
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, dropout, norm))
                block_in = block_out
                if res in attn_resolutions and not local:
                    attns.append(AttnBlock(block_in, norm))
            stage = _Level(blocks, attns)
            if level != len(ch_mult) - 1:
                stage.downsample = Downsample(block_in)
                res //= 2
            self.down.append(stage)
        self.mid = _Middle(block_in, dropout, norm)
        self.norm_out = norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage.run_blocks(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(
        self,
        *,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        out_ch: int,
        resolution: int,
        z_channels: int,
        dropout: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        norm = functools.partial(group_norm, eps=norm_eps)
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _Middle(block_in, dropout, norm)
        levels: list[_Level] = []
        for level in reversed(range(len(ch_mult))):
            block_out = ch * ch_mult[level]
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out, dropout, norm))
                block_in = block_out
                if res in attn_resolutions:
                    attns.append(AttnBlock(block_in, norm))
            stage = _Level(blocks, attns)
            if level != 0:
                stage.upsample = Upsample(block_in)
                res *= 2
            levels.insert(0, stage)
        self.up = nn.ModuleList(levels)
        self.norm_out = norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight the GAN's adaptive loss weight is balanced on."""
        return self.conv_out.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = stage.run_blocks(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))
