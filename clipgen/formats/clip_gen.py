"""HFAiLab/clip-gen's released models (`vqgan_coco.pt`, `gpt_coco.pt`) as clipgen models.

Both files are dicts as clip-gen's train scripts save them, the weights under `model` (optimizer
state, epoch and step beside them, or not). The architecture is read from the weights' shapes.

VQGAN: taming's f16 architecture under other names. Its encoder and decoder are flat
`nn.Sequential`s (residual blocks, attention blocks and resamplers numbered in execution order),
its attention blocks are `nn.MultiheadAttention` with one fused in-projection, and its GroupNorms
keep torch's eps 1e-5 (`VQGANConfig.norm_eps`). Its encoder ends with the 1x1 conv taming calls
`quant_conv`; its decoder starts with the one taming calls `post_quant_conv`. The discriminator
inside the same state dict is training-only and dropped. The quantiser is taming's legacy form
with β 0.2 (only further training reads it).

GPT: pre-LN `nn.TransformerEncoderLayer`s (exact GELU, LayerNorm eps 1e-5, a bias in every
Linear, the head's included: `GPTConfig.head_bias`); the condition is one prefix token,
`cond_proj` of the CLIP embedding; its position table covers the condition and the 255 token
inputs (`GPTConfig.n_positions`). The head count is not in the weights: `heads`, by default the
released model's for its width. clip-gen has no null condition, so `null_prefix` is zeros and an
imported model is sampled without guidance (guidance_scale 1).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from clipgen.formats.state_map import StateMap, describe_keys
from clipgen.formats.taming import taming_config_from_state
from clipgen.formats.torch_file import read_torch_file, tensor_dict
from clipgen.models.gpt import ConditionTransformer, GPTConfig
from clipgen.models.quantize import QuantizerConfig
from clipgen.models.vqgan import VQGAN
from clipgen.models.weights import load_state_strict

RELEASED_HEADS = {1024: 16, 1280: 20}  # width -> heads: gpt2_medium (the COCO release), gpt2_large
NORM_EPS = 1e-5  # nn.GroupNorm's default, which clip-gen's VQGAN keeps
QUANTIZER = QuantizerConfig(beta=0.2, legacy_beta=True)


def checkpoint_kind(state: dict[str, torch.Tensor]) -> str:
    """"vqgan" or "gpt" for a clip-gen state dict; "easynlp" for an EasyNLP text2image one."""
    if any(k.startswith("first_stage_model.") for k in state):
        return "easynlp"
    if "quantizer.embedding.weight" in state:
        return "vqgan"
    if "tok_emb.weight" in state and "cond_proj.weight" in state:
        return "gpt"
    return "unknown"


def read_clip_gen_state(path: str | Path, flag: str, kind: str) -> dict[str, torch.Tensor]:
    """The weights (`model`) of a clip-gen checkpoint that must hold a `kind` ("vqgan" or "gpt");
    a file of another kind is refused with the flag it belongs to."""
    path = Path(path)
    if path.is_dir() and (path / "pytorch_model.bin").is_file():
        raise ValueError(f"{flag} {path} is an EasyNLP checkpoint directory, not a clip-gen file: "
                         "use `clipgen import easynlp`")  # fmt: skip
    checkpoint = read_torch_file(path, flag)
    if isinstance(checkpoint, dict) and "model" in checkpoint:
        state = tensor_dict(checkpoint["model"], flag, path)
    elif isinstance(checkpoint, dict) and checkpoint_kind(checkpoint) != "unknown":
        state = tensor_dict(checkpoint, flag, path)  # weights saved bare
    else:
        raise ValueError(f"{flag} {path} is not a clip-gen checkpoint (a dict with the weights under 'model')")
    found = checkpoint_kind(state)
    if found == kind:
        return state
    if found == "easynlp":
        raise ValueError(f"{flag} {path} is an EasyNLP text2image checkpoint: use `clipgen import easynlp` on its directory")
    if found == "unknown":
        raise ValueError(f"{flag} {path} is neither a clip-gen VQGAN nor a clip-gen GPT (keys: {describe_keys(state)})")
    raise ValueError(f"{flag} {path} holds a clip-gen {found.upper()}, not a {kind.upper()}: pass it as --{found}")


# --- the VQGAN ---------------------------------------------------------------------------------


def _flat_kinds(keys: StateMap, prefix: str) -> list[str]:
    """The module kind at each index of a flat Sequential: res, attn or resample."""
    indices = sorted({int(k[len(prefix) :].split(".")[0]) for k in keys.keys(prefix)})
    if indices != list(range(len(indices))):
        raise ValueError(f"{keys.source}: {prefix}* is not numbered 0..{len(indices) - 1} (found {indices})")
    kinds = []
    for i in indices:
        if keys.has(f"{prefix}{i}.block.0.weight"):
            kinds.append("res")
        elif keys.has(f"{prefix}{i}.attn.in_proj_weight"):
            kinds.append("attn")
        elif keys.has(f"{prefix}{i}.conv.weight"):
            kinds.append("resample")
        else:
            raise ValueError(f"{keys.source}: {prefix}{i} is none of clip-gen's VQGAN modules")
    return kinds


def _copy_resnet(keys: StateMap, src: str, dst: str) -> None:
    for src_part, dst_part in (("block.0", "norm1"), ("block.2", "conv1"), ("block.3", "norm2"), ("block.6", "conv2")):
        keys.copy_module(f"{src}.{src_part}", f"{dst}.{dst_part}")
    if keys.has(f"{src}.shortcut.weight"):  # only where the channel count changes
        keys.copy_module(f"{src}.shortcut", f"{dst}.nin_shortcut")


def _copy_attention(keys: StateMap, src: str, dst: str) -> None:
    """nn.MultiheadAttention's fused [3C, C] in-projection (q, k, v rows) into taming's three 1x1
    convs, and its out-projection into proj_out."""
    keys.copy_module(f"{src}.norm", f"{dst}.norm")
    weight, bias = keys.take(f"{src}.attn.in_proj_weight"), keys.take(f"{src}.attn.in_proj_bias")
    channels = weight.shape[1]
    for name, w, b in zip("qkv", weight.split(channels), bias.split(channels), strict=True):
        keys.out[f"{dst}.{name}.weight"], keys.out[f"{dst}.{name}.bias"] = w.reshape(channels, channels, 1, 1), b
    keys.out[f"{dst}.proj_out.weight"] = keys.take(f"{src}.attn.out_proj.weight").reshape(channels, channels, 1, 1)
    keys.copy(f"{src}.attn.out_proj.bias", f"{dst}.proj_out.bias")


def _copy_levels(keys: StateMap, src: str, dst: str, encoder: bool) -> None:
    """A flat Sequential into taming's levels, walking it as clip-gen built it: the encoder from
    level 0 up with a downsample closing each level but the last, the decoder from the last level
    down with an upsample closing each level but level 0."""
    kinds = _flat_kinds(keys, f"{src}.")
    level = 0 if encoder else kinds.count("resample")
    block = 0
    for i, kind in enumerate(kinds):
        here = f"{src}.{i}"
        if kind == "res":
            _copy_resnet(keys, here, f"{dst}.{level}.block.{block}")
            block += 1
        elif kind == "attn":  # follows the residual block it belongs to
            _copy_attention(keys, here, f"{dst}.{level}.attn.{block - 1}")
        else:
            keys.copy_module(f"{here}.conv", f"{dst}.{level}.{'downsample' if encoder else 'upsample'}.conv")
            level, block = (level + 1, 0) if encoder else (level - 1, 0)


def _copy_middle(keys: StateMap, src: str, dst: str) -> None:
    _copy_resnet(keys, f"{src}.0", f"{dst}.block_1")
    _copy_attention(keys, f"{src}.1", f"{dst}.attn_1")
    _copy_resnet(keys, f"{src}.2", f"{dst}.block_2")


def rename_clip_gen_vqgan(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """clip-gen's VQGAN weights under taming's (clipgen's) names; the discriminator left out."""
    keys = StateMap(state, source)
    keys.copy_module("encoder.conv_in", "encoder.conv_in")
    _copy_levels(keys, "encoder.down", "encoder.down", encoder=True)
    _copy_middle(keys, "encoder.mid", "encoder.mid")
    keys.copy_module("encoder.final.0", "encoder.norm_out")
    keys.copy_module("encoder.final.2", "encoder.conv_out")
    keys.copy_module("encoder.final.3", "quant_conv")
    keys.copy("quantizer.embedding.weight", "quantize.embedding.weight")
    keys.copy_module("decoder.quant_conv_in", "post_quant_conv")
    keys.copy_module("decoder.conv_in", "decoder.conv_in")
    _copy_middle(keys, "decoder.mid", "decoder.mid")
    _copy_levels(keys, "decoder.up", "decoder.up", encoder=False)
    keys.copy_module("decoder.final.0", "decoder.norm_out")
    keys.copy_module("decoder.final.2", "decoder.conv_out")
    keys.drop("discriminator.")  # the GAN's critic: training only
    return keys.finish()


def vqgan_from_clip_gen(state: dict[str, torch.Tensor], token_grid: int, source: str) -> VQGAN:
    """A clipgen VQGAN holding clip-gen's VQGAN weights; `token_grid` is the side of the GPT's
    token grid (the weights do not record the resolution)."""
    renamed = rename_clip_gen_vqgan(state, source)
    model = VQGAN(taming_config_from_state(renamed, token_grid, source, norm_eps=NORM_EPS, quantizer=QUANTIZER))
    load_state_strict(model, renamed, source=source)
    return model.eval()


# --- the GPT -----------------------------------------------------------------------------------


def clip_gen_gpt_config(state: dict[str, torch.Tensor], heads: int | None, source: str) -> GPTConfig:
    vocab_size, width = state["tok_emb.weight"].shape
    pos_emb = state.get("pos_emb")
    if pos_emb is None or pos_emb.dim() != 3 or pos_emb.shape[0] != 1:
        raise ValueError(f"{source}: expected pos_emb of shape [1, positions, width]")
    prefix_width, cond_dim = state["cond_proj.weight"].shape
    layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    if heads is None:
        if width not in RELEASED_HEADS:
            raise ValueError(f"{source}: a GPT of width {width} is none of clip-gen's released ones "
                             f"(gpt2_medium 1024: 16 heads, gpt2_large 1280: 20) and the weights do not record "
                             f"the head count: give it with --gpt-heads")  # fmt: skip
        heads = RELEASED_HEADS[width]
    if heads < 1 or width % heads:
        raise ValueError(f"--gpt-heads {heads} does not divide the GPT's width {width}")
    positions = pos_emb.shape[1]  # the condition and the 255 inputs: as many as image tokens
    return GPTConfig(
        vocab_size=vocab_size, block_size=positions, cond_dim=cond_dim, n_prefix=prefix_width // width, n_layer=layers,
        n_head=heads, n_embd=width, dropout=0.0, bias=True, head_bias=True, n_positions=positions,
    )  # fmt: skip


def rename_clip_gen_gpt(state: dict[str, torch.Tensor], config: GPTConfig, source: str) -> dict[str, torch.Tensor]:
    """clip-gen's GPT weights under clipgen's names (the causal masks checked and left out), plus
    the null prefix clip-gen has no counterpart of: zeros."""
    keys = StateMap(state, source)
    keys.copy("tok_emb.weight", "tok_emb.weight")
    keys.out["pos_emb.weight"] = keys.take("pos_emb")[0]
    keys.copy_module("cond_proj", "cond_proj")
    causal_mask = torch.ones(config.block_size, config.block_size, dtype=torch.bool).triu(1)
    for i in range(config.n_layer):
        mask = keys.take(f"blocks.{i}.mask")
        if not torch.equal(mask.bool(), causal_mask):  # clipgen's attention is always plain causal
            raise ValueError(f"{source}: blocks.{i}.mask is not the causal mask (True above the diagonal)")
        src, dst = f"blocks.{i}.encoder.", f"blocks.{i}."
        keys.copy(f"{src}self_attn.in_proj_weight", f"{dst}attn.qkv.weight")  # q, k, v rows, as clipgen's
        keys.copy(f"{src}self_attn.in_proj_bias", f"{dst}attn.qkv.bias")
        keys.copy_module(f"{src}self_attn.out_proj", f"{dst}attn.proj")
        for src_part, dst_part in (("norm1", "ln_1"), ("norm2", "ln_2"), ("linear1", "mlp.0"), ("linear2", "mlp.2")):
            keys.copy_module(f"{src}{src_part}", f"{dst}{dst_part}")
    keys.copy_module("norm", "ln_f")
    keys.copy_module("head", "head")
    renamed = keys.finish()
    renamed["null_prefix"] = torch.zeros(config.n_prefix, config.n_embd)  # clip-gen has no null condition
    return renamed


def gpt_from_clip_gen(state: dict[str, torch.Tensor], heads: int | None, source: str) -> ConditionTransformer:
    """A clipgen ConditionTransformer holding clip-gen's GPT weights."""
    config = clip_gen_gpt_config(state, heads, source)
    renamed = rename_clip_gen_gpt(state, config, source)
    model = ConditionTransformer(config)
    load_state_strict(model, renamed, source=source)
    return model.eval()


def import_clip_gen(vqgan_path: str | Path, gpt_path: str | Path, heads: int | None = None) -> tuple[VQGAN, ConditionTransformer]:
    """The released (or any clip-gen-trained) VQGAN and GPT as clipgen models."""
    vqgan_state = read_clip_gen_state(vqgan_path, "--vqgan", "vqgan")
    gpt_state = read_clip_gen_state(gpt_path, "--gpt", "gpt")
    gpt = gpt_from_clip_gen(gpt_state, heads, f"--gpt {gpt_path}")
    grid = math.isqrt(gpt.config.block_size)
    if grid * grid != gpt.config.block_size:
        raise ValueError(f"--gpt {gpt_path}: {gpt.config.block_size} image tokens are not a square grid")
    vqgan = vqgan_from_clip_gen(vqgan_state, grid, f"--vqgan {vqgan_path}")
    if vqgan.config.n_embed != gpt.config.vocab_size:
        raise ValueError(f"the VQGAN has {vqgan.config.n_embed} codes but the GPT predicts {gpt.config.vocab_size}: "
                         "they are not a pair")  # fmt: skip
    return vqgan, gpt
