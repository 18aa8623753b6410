"""EasyNLP's text2image checkpoints (pai-painter, ARTIST) as clipgen models.

A checkpoint directory holds `config.json` (an ARTISTConfig: the transformer's settings only),
`pytorch_model.bin` (`first_stage_model.*`: the VQGAN under taming's names; `transformer.*`: a
minGPT with separate query/key/value Linears, a causal-mask buffer per block and no head bias)
and `vocab.txt` (the caption vocab, bert-base-chinese's in the releases). Other files a trainer
leaves there (optimizer state, train_config.json) are not read.

The transformer reads 32 caption token ids, then the image codes, in one sequence whose embedding
table holds the codes first and the text ids after them: clipgen's text-token layout
(`GPTConfig.text_vocab_size`, n_prefix 32). config.json says nothing about the VQGAN, which
EasyNLP builds with taming's f16 defaults; its shape is read from the weights and its resolution
from the transformer's token count (EasyNLP hard-codes a 16x16 grid). ARTIST checkpoints add
`transformer.ent_emb` (entity vectors to the model width, `GPTConfig.entity_dim`).

EasyNLP loads its checkpoints with `strict=False`, so a misnamed key stays random without a word;
here every key is accounted for, and an unknown or missing one is an error that names it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from clipgen.config import ConfigError, from_dict
from clipgen.errors import read_text_file
from clipgen.formats.state_map import StateMap
from clipgen.formats.taming import taming_config_from_state
from clipgen.formats.torch_file import read_torch_file, tensor_dict
from clipgen.models.gpt import ConditionTransformer, GPTConfig
from clipgen.models.quantize import QuantizerConfig
from clipgen.models.vqgan import VQGAN
from clipgen.models.weights import load_state_strict

TEXT_LEN = 32  # caption tokens per sequence: EasyNLP's text2image hard-codes it
CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE = "config.json", "pytorch_model.bin", "vocab.txt"
QUANTIZER = QuantizerConfig(beta=0.25, legacy_beta=True)  # taming's VectorQuantizer2, as EasyNLP's VQModel


@dataclass
class ArtistConfig:
    """config.json as EasyNLP's trainer writes it (ARTISTConfig; a missing key takes its default)."""

    vocab_size: int = 37512
    img_vocab_size: int = 16384
    text_vocab_size: int = 21128
    block_size: int = 288
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    embd_pdrop: float = 0.0
    resid_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    n_unmasked: int = 0
    model_type: str = "artist"
    easynlp_version: str = ""


# Keys of transformers' PretrainedConfig that EasyNLP's save_pretrained may add to config.json
# (ARTISTConfig derives from it): bookkeeping and generation defaults, none of which says anything
# about the model's shape, so they are read past; any other unknown key is refused by name.
PRETRAINED_CONFIG_KEYS = frozenset({
    "_name_or_path", "architectures", "transformers_version", "torch_dtype", "return_dict",
    "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16", "pruned_heads",
    "tie_word_embeddings", "is_encoder_decoder", "is_decoder", "add_cross_attention", "chunk_size_feed_forward",
    "id2label", "label2id", "problem_type", "finetuning_task", "tokenizer_class", "prefix", "task_specific_params",
    "bos_token_id", "pad_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id",
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "cross_attention_hidden_size",
    "tf_legacy_loss", "use_return_dict",
})  # fmt: skip


def read_artist_config(path: Path) -> ArtistConfig:
    """config.json as an ArtistConfig: a JSON object whose keys are ArtistConfig's or
    PretrainedConfig's generic ones (dropped); anything else is a one-line ConfigError."""
    try:
        data = json.loads(read_text_file(path, "SRC"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object (the model's settings), got {type(data).__name__}")
    try:
        return from_dict(ArtistConfig, {k: v for k, v in data.items() if k not in PRETRAINED_CONFIG_KEYS})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


@dataclass
class EasyNLPCheckpoint:
    config: ArtistConfig
    state: dict[str, torch.Tensor]
    vocab: bytes


def read_easynlp_dir(src: str | Path) -> EasyNLPCheckpoint:
    """The config, weights and caption vocab of an EasyNLP text2image checkpoint directory."""
    src = Path(src)
    if src.is_file():
        raise NotADirectoryError(f"SRC {src} is a file, not an EasyNLP checkpoint directory ({CONFIG_FILE}, "
                                 f"{WEIGHTS_FILE}, {VOCAB_FILE}); clip-gen's .pt files go to `clipgen import clip-gen`")  # fmt: skip
    if not src.is_dir():
        raise FileNotFoundError(f"SRC {src}: no such directory")
    for name in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src} is not an EasyNLP checkpoint directory: it has no {name}")
    config = read_artist_config(src / CONFIG_FILE)
    if config.model_type != "artist":
        raise ConfigError(f"{src / CONFIG_FILE}: model_type {config.model_type!r} is not EasyNLP's text2image (artist)")
    loaded = read_torch_file(src / WEIGHTS_FILE, "SRC")
    if isinstance(loaded, dict) and "model" in loaded:
        raise ValueError(f"{src / WEIGHTS_FILE} is laid out as a clip-gen checkpoint (weights under 'model'): "
                         "use `clipgen import clip-gen`")  # fmt: skip
    return EasyNLPCheckpoint(config, tensor_dict(loaded, "SRC", src / WEIGHTS_FILE), (src / VOCAB_FILE).read_bytes())


def easynlp_gpt_config(config: ArtistConfig, entity_dim: int, source: str) -> GPTConfig:
    if config.vocab_size != config.img_vocab_size + config.text_vocab_size:
        raise ConfigError(f"{source}: vocab_size {config.vocab_size} is not img_vocab_size + text_vocab_size "
                          f"({config.img_vocab_size} + {config.text_vocab_size})")  # fmt: skip
    if config.block_size <= TEXT_LEN:
        raise ConfigError(f"{source}: block_size {config.block_size} leaves no image tokens after the {TEXT_LEN} caption tokens")
    return GPTConfig(
        vocab_size=config.img_vocab_size, text_vocab_size=config.text_vocab_size, n_prefix=TEXT_LEN,
        block_size=config.block_size - TEXT_LEN, n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd,
        dropout=0.0, bias=True, head_bias=False, entity_dim=entity_dim,
    )  # fmt: skip


def copy_transformer(keys: StateMap, config: ArtistConfig, knowledge: bool) -> GPTConfig:
    """Rename the transformer (`transformer.*`) into `keys.out` and return its config (a text-token
    ConditionTransformer's); with `knowledge`, ARTIST's `ent_emb` too (without, an ARTIST
    checkpoint's ent_emb is dropped on purpose)."""
    has_entities = keys.has("transformer.ent_emb.weight")
    entity_dim = keys.state["transformer.ent_emb.weight"].shape[1] if has_entities and knowledge else 0
    gpt_config = easynlp_gpt_config(config, entity_dim, keys.source)
    keys.copy("transformer.tok_emb.weight", "tok_emb.weight")
    keys.out["pos_emb.weight"] = keys.take("transformer.pos_emb")[0]
    causal = torch.ones(config.block_size, config.block_size).tril()
    for i in range(config.n_layer):
        src, dst = f"transformer.blocks.{i}.", f"blocks.{i}."
        mask = keys.take(f"{src}attn.mask")
        # EasyNLP loads this buffer from the checkpoint; an unmasked text block (n_unmasked > 0)
        # would let the caption positions see one another, which causal attention cannot express
        if mask.shape[-2:] != causal.shape or not torch.equal(mask.reshape(causal.shape).float(), causal):
            raise ValueError(f"{keys.source}: {src}attn.mask is not the plain causal mask (n_unmasked > 0?), "
                             "which clipgen's causal attention cannot reproduce")  # fmt: skip
        for part in ("weight", "bias"):
            keys.out[f"{dst}attn.qkv.{part}"] = torch.cat([keys.take(f"{src}attn.{name}.{part}") for name in ("query", "key", "value")])
        keys.copy_module(f"{src}attn.proj", f"{dst}attn.proj")
        for src_part, dst_part in (("ln1", "ln_1"), ("ln2", "ln_2"), ("mlp.0", "mlp.0"), ("mlp.2", "mlp.2")):
            keys.copy_module(f"{src}{src_part}", f"{dst}{dst_part}")
    keys.copy_module("transformer.ln_f", "ln_f")
    keys.copy("transformer.head.weight", "head.weight")
    if entity_dim:
        keys.copy_module("transformer.ent_emb", "ent_emb")
    elif has_entities:
        keys.drop("transformer.ent_emb.")
    return gpt_config


def import_easynlp(checkpoint: EasyNLPCheckpoint, source: str, knowledge: bool = True) -> tuple[VQGAN, ConditionTransformer]:
    """The VQGAN and the transformer of an EasyNLP checkpoint as clipgen models."""
    keys = StateMap(checkpoint.state, source)
    keys.copy_under("first_stage_model.", "")
    vq_state = dict(keys.out)
    keys.out.clear()
    gpt_config = copy_transformer(keys, checkpoint.config, knowledge)
    gpt_state = keys.finish()
    gpt_state["null_prefix"] = torch.zeros(gpt_config.n_prefix, gpt_config.n_embd)  # EasyNLP has no null condition
    grid = math.isqrt(gpt_config.block_size)
    if grid * grid != gpt_config.block_size:
        raise ConfigError(f"{source}: {gpt_config.block_size} image tokens are not a square grid")
    vqgan = VQGAN(taming_config_from_state(vq_state, grid, source, quantizer=QUANTIZER))
    load_state_strict(vqgan, vq_state, source=f"{source} (first_stage_model.*)")
    if vqgan.config.n_embed != gpt_config.vocab_size:
        raise ConfigError(f"{source}: the VQGAN has {vqgan.config.n_embed} codes, config.json's img_vocab_size is {gpt_config.vocab_size}")
    gpt = ConditionTransformer(gpt_config)
    load_state_strict(gpt, gpt_state, source=f"{source} (transformer.*)")
    return vqgan.eval(), gpt.eval()
