"""The condition transformer: p(image tokens | condition), decoder-only, pre-LN; the condition is a
CLIP embedding, or caption token ids for the text-token baseline.

The CLIP embedding (of the image in training, of the prompt's text at inference) is projected to
`n_prefix` prefix tokens; image token i is predicted from the prefix and tokens < i. With
`cond_every_token` the embedding is also projected to one vector added to every image token's
input, and with `cond_every_layer` to one vector per block added to the residual stream before
it, so each position sees the condition directly rather than only through attention to the
prefix (both learn shape faster on the CPU demo: BENCHMARKS.md). `rope_2d` also rotates queries
and keys by each image token's (row, column) (models/rope.py). The text-token baseline
(`text_vocab_size` > 0) uses caption token ids as the prefix instead. A learned
"null" prefix stands for "no condition": training swaps it in for a fraction of images
(`cond_dropout`), which is what classifier-free guidance needs at sampling time.

Sampling keeps a per-layer key/value cache, so the prefix and every sampled token run through the
network once; `sample(..., kv_cache=False)` re-runs the whole sequence at every step, as the
EasyNLP and HFAiLab/clip-gen samplers do, and is kept to compare against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipgen.models.attention import attention
from clipgen.models.knowledge import mix_entity_knowledge
from clipgen.models.rope import Rope2D
from clipgen.models.token_pick import RowPicker


@dataclass
class GPTConfig:
    vocab_size: int = 16384  # the VQGAN's codebook size
    block_size: int = 256  # image tokens per image (16×16)
    cond_dim: int = 512  # CLIP embedding width
    n_prefix: int = 4  # prefix tokens the condition is projected to
    n_layer: int = 24
    n_head: int = 16
    n_embd: int = 1024
    # each block's MLP is mlp_ratio × n_embd wide (GPT-2's 4). The demo's shapes32 takes a third
    # layer with a 2× MLP: the same products per token as 2 layers of 4×, 2 points more shape
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm (nanoGPT: False is a little better and faster)
    cond_every_token: bool = False  # also add a projection of the condition to every token's input
    cond_every_layer: bool = False  # and another one to the residual stream before every block
    # > 0: the condition is n_prefix caption token ids, not an embedding (the EasyNLP-style
    # text-token baseline); they share the embedding table with the image codes, shifted past them
    text_vocab_size: int = 0
    # rotate queries and keys by each image token's (row, column) as well: attention then depends
    # on offsets, so a shape learned in one place holds in every other (models/rope.py)
    rope_2d: bool = False
    rope_theta: float = 100.0  # a grid side of 8–16 tokens needs no slower rotations than this
    # what other projects' released models carry (clipgen/formats/):
    head_bias: bool = False  # a bias on the output head (HFAiLab/clip-gen's GPT has one)
    # the position table's length; 0: n_prefix + block_size (clip-gen's stops one short: the last
    # token is never an input, so no model reads that row)
    n_positions: int = 0
    # > 0: ARTIST's entity knowledge, vectors of this width mixed into the prefix after the last
    # block (models/knowledge.py); 0: none
    entity_dim: int = 0


class KVCache:
    """Preallocated keys and values for every layer: [layers, B, heads, positions, head_dim], written
    in place one position at a time. Attention reads only the positions filled so far, so the
    memory starts uninitialised (zeroing it cost 5 ms per call at paper scale), unless `zeroed`:
    the fixed-shape step (static_decode.py) attends over every position, written or not."""

    def __init__(self, config: GPTConfig, batch: int, device, dtype, zeroed: bool = False):
        shape = (config.n_layer, batch, config.n_head, config.n_prefix + config.block_size, config.n_embd // config.n_head)
        make = torch.zeros if zeroed else torch.empty
        self.k = make(shape, device=device, dtype=dtype)
        self.v = make(shape, device=device, dtype=dtype)
        self.k_layers, self.v_layers = self.k.unbind(0), self.v.unbind(0)  # per-layer views, made once


class SelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int, rope: Rope2D | None, start: int) -> torch.Tensor:
        b, t, c = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_head, c // self.n_head)
        if rope is not None:  # queries and keys rotated in one pass: [2, b, heads, t, head_dim]
            q, k = rope(qkv[:, :, :2].permute(2, 0, 3, 1, 4), start).unbind(0)
        else:
            q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        causal = True
        if cache is not None:
            cache.k[layer, :, :, start : start + t] = k
            cache.v[layer, :, :, start : start + t] = v
            k, v = cache.k[layer, :, :, : start + t], cache.v[layer, :, :, : start + t]
            # a single new query may see every cached position; a multi-position prefill from an
            # empty cache is an ordinary causal pass
            causal = t > 1
            if causal and start != 0:
                raise ValueError("multi-token steps are only supported from an empty cache")
        y = attention(q, k, v, is_causal=causal, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, config.mlp_ratio * config.n_embd, bias=config.bias),
            nn.GELU(),
            nn.Linear(config.mlp_ratio * config.n_embd, config.n_embd, bias=config.bias),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int, rope: Rope2D | None, start: int) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, rope, start)
        return x + self.mlp(self.ln_2(x))


class ConditionTransformer(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        if config.text_vocab_size and (config.cond_every_token or config.cond_every_layer):
            raise ValueError("cond_every_token/cond_every_layer need an embedding condition, not caption tokens (text_vocab_size > 0)")
        self.tok_emb = nn.Embedding(config.vocab_size + config.text_vocab_size, config.n_embd)
        positions = config.n_positions or config.n_prefix + config.block_size
        if positions < config.n_prefix + config.block_size - 1:
            raise ValueError(f"n_positions {positions} is too short for {config.n_prefix} prefix and {config.block_size} image tokens")
        self.pos_emb = nn.Embedding(positions, config.n_embd)
        head_dim = config.n_embd // config.n_head
        self.rope = Rope2D(head_dim, config.n_prefix, config.block_size, config.rope_theta) if config.rope_2d else None
        # only the image codes are ever predicted, so the head stops at the codebook
        self.cond_proj = None if config.text_vocab_size else nn.Linear(config.cond_dim, config.n_prefix * config.n_embd)
        self.null_prefix = nn.Parameter(torch.zeros(config.n_prefix, config.n_embd))
        if config.cond_every_token:
            self.cond_token = nn.Linear(config.cond_dim, config.n_embd)
            self.null_token = nn.Parameter(torch.zeros(config.n_embd))
        if config.cond_every_layer:
            self.cond_layers = nn.Linear(config.cond_dim, config.n_layer * config.n_embd)
            self.null_layers = nn.Parameter(torch.zeros(config.n_layer * config.n_embd))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=config.head_bias)
        self.ent_emb = nn.Linear(config.entity_dim, config.n_embd) if config.entity_dim else None
        self.apply(self._init_weights)
        # nanoGPT: residual projections scaled by 1/sqrt(2·layers) keep the residual stream's
        # variance from growing with depth
        for name, param in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        nn.init.normal_(self.null_prefix, mean=0.0, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.pos_emb.weight.numel() if non_embedding else n

    # --- the forward pass ------------------------------------------------------------------------

    def prefix(self, cond: torch.Tensor | None, drop: torch.Tensor | None = None) -> torch.Tensor:
        """[B, cond_dim] embeddings (or [B, n_prefix] caption ids) -> [B, n_prefix, n_embd]; rows
        where `drop` is True (or all rows when `cond` is None, which needs `drop` for the batch
        size) get the null prefix."""
        cfg = self.config
        null = self.null_prefix.unsqueeze(0)
        if cond is None:
            return null.expand(drop.shape[0], -1, -1)
        if cfg.text_vocab_size:
            prefix = self.tok_emb(cond.long() + cfg.vocab_size)
        else:
            prefix = self.cond_proj(cond.to(self.cond_proj.weight.dtype)).view(-1, cfg.n_prefix, cfg.n_embd)
        if drop is not None:
            prefix = torch.where(drop.view(-1, 1, 1), null.to(prefix.dtype), prefix)
        return prefix

    @staticmethod
    def _projected(proj: nn.Linear, null: torch.Tensor, cond: torch.Tensor | None, drop: torch.Tensor | None) -> torch.Tensor:
        """proj(cond) per row, the learned `null` vector where the condition is dropped (or absent)."""
        if cond is None:
            return null.expand(drop.shape[0], -1)
        out = proj(cond.to(proj.weight.dtype))
        return out if drop is None else torch.where(drop.view(-1, 1), null.to(out.dtype), out)

    def condition_bias(self, cond: torch.Tensor | None, drop: torch.Tensor | None = None) -> torch.Tensor | None:
        """With `cond_every_token`, [B, n_embd] added to every image token's input (the null vector
        where the condition is dropped, as `prefix` does); otherwise None."""
        return self._projected(self.cond_token, self.null_token, cond, drop) if self.config.cond_every_token else None

    def layer_bias(self, cond: torch.Tensor | None, drop: torch.Tensor | None = None) -> torch.Tensor | None:
        """With `cond_every_layer`, [B, n_layer, n_embd]: row l is added to every position's
        residual stream before block l; otherwise None."""
        if not self.config.cond_every_layer:
            return None
        return self._projected(self.cond_layers, self.null_layers, cond, drop).view(-1, self.config.n_layer, self.config.n_embd)

    def embed_tokens(self, tokens: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        emb = self.tok_emb(tokens)
        return emb if bias is None else emb + bias.unsqueeze(1)

    def _run(
        self, x: torch.Tensor, start: int, cache: KVCache | None = None, layer_bias: torch.Tensor | None = None, first_logit: int = 0,
        knowledge: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for the positions of x from `first_logit` on. The final norm and the head run only
        there: the prefix predicts nothing, and at 16384 codes slicing the logits afterwards cost a
        zero-filled [B, T, vocab] gradient in every backward pass. `knowledge` ([B, entities,
        n_prefix, entity_dim], with `entity_dim`) is mixed into the prefix after the last block."""
        positions = torch.arange(start, start + x.shape[1], device=x.device)
        h = self.drop(x + self.pos_emb(positions))
        for layer, block in enumerate(self.blocks):
            if layer_bias is not None:
                h = h + layer_bias[:, layer].unsqueeze(1)
            h = block(h, cache, layer, self.rope, start)
        if knowledge is not None:
            h = mix_entity_knowledge(h, self.ent_emb(knowledge.to(h.dtype)))
        return self.head(self.ln_f(h[:, first_logit:]))

    def forward(self, cond: torch.Tensor, tokens: torch.Tensor, drop: torch.Tensor | None = None,
                knowledge: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Logits [B, T, vocab] predicting tokens [B, T] (T ≤ block_size) from the condition."""
        emb = self.embed_tokens(tokens[:, :-1], self.condition_bias(cond, drop))
        x = torch.cat([self.prefix(cond, drop), emb], dim=1)
        return self._run(x, start=0, layer_bias=self.layer_bias(cond, drop), first_logit=self.config.n_prefix - 1, knowledge=knowledge)

    def loss(self, cond: torch.Tensor, tokens: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        logits = self(cond, tokens, drop)
        return F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())

    # --- sampling --------------------------------------------------------------------------------

    def sample(
        self,
        cond: torch.Tensor,
        *,
        num_tokens: int | None = None,
        temperature: float | torch.Tensor = 1.0,
        top_k: int | torch.Tensor = 0,
        top_p: float | torch.Tensor = 1.0,
        guidance_scale: float | torch.Tensor = 1.0,
        uniforms: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        kv_cache: bool = True,
        knowledge: torch.Tensor | None = None,
        static_cache: bool = False,
    ) -> torch.Tensor:
        """Token ids [B, num_tokens] for the condition embeddings [B, cond_dim].

        Each setting is one value for the batch or a [B] tensor, one per row, so requests with
        different settings share one call. With guidance_scale ≠ 1 the batch runs twice,
        conditioned and with the null prefix, and logits = uncond + scale · (cond − uncond)
        (classifier-free guidance). Row b's token at step i is drawn by inverse CDF from
        `uniforms[b, i]` ([B, num_tokens] in [0, 1)), or from uniforms drawn with `generator`.
        `knowledge` (ARTIST's entity vectors, see `_run`) enters the first token's step only, as
        ARTIST's own sampler uses it. `static_cache` decodes with the fixed-shape step of
        static_decode.py, one replayed CUDA graph per step on a GPU (logits equal to rounding; the
        graph path is tested on the CPU's eager equivalent only, it has not run on a GPU yet); it
        has no effect with `kv_cache=False` or in training mode (dropout runs the general pass)."""
        # inference mode leaves out autograd's bookkeeping on every operation (a tenth of a step
        # at the demo's size); the tokens are cloned out of it, an ordinary tensor for the caller
        with torch.inference_mode():
            tokens = self._sample(cond, num_tokens, temperature, top_k, top_p, guidance_scale, uniforms, generator, kv_cache, knowledge,
                                  static_cache)  # fmt: skip
        return tokens.clone()

    def _sample(self, cond, num_tokens, temperature, top_k, top_p, guidance_scale, uniforms, generator, kv_cache, knowledge,
                static_cache=False) -> torch.Tensor:  # fmt: skip
        cfg = self.config
        num_tokens = num_tokens or cfg.block_size
        batch = cond.shape[0]
        if uniforms is None:
            device = generator.device if generator is not None else cond.device
            uniforms = torch.rand(batch, num_tokens, generator=generator, device=device, dtype=torch.float64)
        if uniforms.shape != (batch, num_tokens):
            raise ValueError(f"uniforms must be [{batch}, {num_tokens}], got {list(uniforms.shape)}")
        picker = RowPicker(batch, cond.device, temperature, top_k, top_p, guidance_scale, uniforms)
        if knowledge is not None and picker.guided:
            raise ValueError("entity knowledge (ARTIST) has no null condition to guide against: guidance_scale must be 1")
        prefix, bias, layer_bias = self._sampling_conditions(cond, picker.guided)
        tokens = torch.empty(batch, num_tokens, dtype=torch.long, device=cond.device)
        if not kv_cache:  # re-run the prefix and every token so far, as the naive samplers do
            for i in range(num_tokens):
                seq = tokens[:, :i].repeat(2, 1) if picker.guided else tokens[:, :i]
                x = torch.cat([prefix, self.embed_tokens(seq, bias)], dim=1)
                logits = self._run(x, 0, None, layer_bias, first_logit=-1, knowledge=knowledge if i == 0 else None)[:, 0]
                tokens[:, i : i + 1] = picker.pick(logits.float(), i)
            return tokens
        cache = KVCache(cfg, prefix.shape[0], cond.device, prefix.dtype, zeroed=static_cache)
        logits = self._run(prefix, 0, cache, layer_bias, first_logit=-1, knowledge=knowledge)[:, 0]
        if static_cache and not self.training:
            from clipgen.models.static_decode import FixedShapeCache, graphed

            step = graphed(_DecodeStep(self, cache, bias, layer_bias, FixedShapeCache(cache.k.shape[3], cond.device)))
        else:
            step = _DecodeStep(self, cache, bias, layer_bias)
        for i in range(num_tokens):
            next_token = picker.pick(logits.float(), i)
            tokens[:, i : i + 1] = next_token
            if i + 1 < num_tokens:
                step_in = torch.cat([next_token, next_token]) if picker.guided else next_token
                if self.training:  # dropout draws as the training forward does
                    logits = self._run(self.embed_tokens(step_in, bias), cfg.n_prefix + i, cache, layer_bias)[:, -1]
                else:
                    logits = step(step_in.view(-1), cfg.n_prefix + i)
        return tokens

    def _sampling_conditions(self, cond: torch.Tensor, guided: bool) -> tuple:
        """(prefix, token bias, layer bias) for the batch; with guidance, the null condition's rows
        follow the conditioned ones. The biases are None where the config has none."""
        parts = [(self.prefix(cond), self.condition_bias(cond), self.layer_bias(cond))]
        if guided:
            nulls = torch.ones(cond.shape[0], dtype=torch.bool, device=cond.device)
            parts.append((self.prefix(None, nulls), self.condition_bias(None, nulls), self.layer_bias(None, nulls)))
        return tuple(None if part[0] is None else torch.cat(part) for part in zip(*parts))


class GrowingCache:
    """How the ordinary decoding step addresses the KV cache: the position is a Python int, and
    attention reads the positions written so far (static_decode.FixedShapeCache is the fixed-shape
    alternative, for a CUDA graph)."""

    @staticmethod
    def position(pos: int, device) -> int:
        return pos

    @staticmethod
    def row(table: torch.Tensor, pos: int) -> torch.Tensor:
        return table[pos]

    @staticmethod
    def store(cache_layer: torch.Tensor, x: torch.Tensor, pos: int) -> None:
        cache_layer.narrow(2, pos, 1).copy_(x)

    @staticmethod
    def visible(pos: int) -> int:
        """What `attend` needs to see positions 0..pos, worked out once per step."""
        return pos + 1

    @staticmethod
    def attend(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, visible: int) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k_cache.narrow(2, 0, visible), v_cache.narrow(2, 0, visible))


class _DecodeStep:
    """`ConditionTransformer._run` for one new position per row through the KV cache, in eval mode:
    the same kernels on the same values in the same order, so the logits are bit-identical (outside
    autocast, where `_run`'s attention stays float32 on a CPU: no sampler runs under it; large
    float32 weights on a CPU go through oneDNN, equal to rounding: `decode_product`), minus
    what one position does not need: module calls, the [B, 1, C] time axis, position indices,
    F.linear's dispatch layers (it runs mm, or addmm with a bias, on a 2-d input), a RoPE call
    each for queries and keys where one covers both, indexing the 5-d cache. At the demo's width
    a step is per-operation overhead, so every operation left out is time saved."""

    def __init__(self, model: ConditionTransformer, cache: KVCache, bias: torch.Tensor | None, layer_bias: torch.Tensor | None,
                 addressing=None):  # fmt: skip
        """`addressing`: how positions reach the cache, GrowingCache() unless given (the
        fixed-shape static_decode.FixedShapeCache)."""
        cfg = model.config
        self.model, self.cache, self.bias = model, cache, bias
        self.at = addressing or GrowingCache()
        self.layer_bias = [None] * cfg.n_layer if layer_bias is None else layer_bias.unbind(1)
        self.heads, self.width, self.norm_shape = cfg.n_head, cfg.n_embd, (cfg.n_embd,)
        self.products = [tuple(decode_product(m.weight, m.bias) for m in (b.attn.qkv, b.attn.proj, b.mlp[0], b.mlp[2]))
                         for b in model.blocks]  # fmt: skip
        self.head_product = decode_product(model.head.weight, model.head.bias)
        self.rope = model.rope

    def __call__(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """[rows] token ids at position `pos` -> [rows, vocab] logits for the next position."""
        model, cache, heads, width, norm_shape, at = self.model, self.cache, self.heads, self.width, self.norm_shape, self.at
        pos = at.position(pos, tokens.device)
        rows = tokens.shape[0]
        h = model.tok_emb.weight.index_select(0, tokens)
        if self.bias is not None:
            h = h + self.bias
        h = h + at.row(model.pos_emb.weight, pos)
        # what depends only on the position, once for every layer
        visible = at.visible(pos)
        if self.rope is not None:
            cos, signed_sin = at.row(self.rope.cos, pos), at.row(self.rope.signed_sin, pos)
        layers = zip(model.blocks, self.products, self.layer_bias, cache.k_layers, cache.v_layers)
        for block, (qkv, proj, fc, out), layer_bias, k_cache, v_cache in layers:
            if layer_bias is not None:
                h = h + layer_bias
            ln_1, ln_2, mlp = block.ln_1, block.ln_2, block.mlp
            x = F.layer_norm(h, norm_shape, ln_1.weight, ln_1.bias, ln_1.eps)
            # [rows, 3C] viewed as [rows, 3·heads, 1, head_dim]: queries, keys, values of one position
            qkv_rows = qkv(x).view(rows, 3 * heads, 1, width // heads)
            qk = qkv_rows.narrow(1, 0, 2 * heads)
            if model.rope is not None:  # Rope2D.forward for one position: queries and keys in one pass
                qk = self.rope.rotate(qk, cos, signed_sin)
            at.store(k_cache, qk.narrow(1, heads, heads), pos)
            at.store(v_cache, qkv_rows.narrow(1, 2 * heads, heads), pos)
            y = at.attend(qk.narrow(1, 0, heads), k_cache, v_cache, visible)
            h = h + proj(y.transpose(1, 2).reshape(rows, width))
            x = F.layer_norm(h, norm_shape, ln_2.weight, ln_2.bias, ln_2.eps)
            x = F.gelu(fc(x), approximate=mlp[1].approximate)
            h = h + out(x)
        ln_f = model.ln_f
        return self.head_product(F.layer_norm(h, norm_shape, ln_f.weight, ln_f.bias, ln_f.eps))


# From this many weights on (4 MB in float32), a decode step's product on a CPU goes through oneDNN
LARGE_PRODUCT = 1 << 20


def decode_product(weight: torch.Tensor, bias: torch.Tensor | None):
    """x [rows, in] -> F.linear(x, weight, bias) for the decoding step's few rows. Small weights
    (the demo's): torch.mm / addmm on the transposed view, the kernels F.linear runs, so the step
    stays bit-identical to `_run`. From LARGE_PRODUCT float32 weights on a CPU: oneDNN's linear,
    equal to rounding. MKL's product of a few rows with a transposed weight is slow on some CPUs:
    on an AMD EPYC (Zen 4) a paper-scale step's products ran at 8.6 GB/s through mm and 21.6
    through oneDNN for 2 rows, and the step 2.4x faster (BENCHMARKS.md, "Time per token"). The op
    is torch's own but not public: where it is missing or oneDNN is switched off
    (`torch.backends.mkldnn`), mm it is. Inference only: the op has no backward."""
    onednn = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    usable = onednn is not None and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    if usable and weight.device.type == "cpu" and weight.dtype == torch.float32 and weight.numel() >= LARGE_PRODUCT:
        return lambda x: onednn(x, weight, bias, "none", [], "")
    weight_t = weight.t()  # the transposed view F.linear would make at every call
    if bias is None:
        return lambda x: torch.mm(x, weight_t)
    return lambda x: torch.addmm(bias, x, weight_t)


def adamw_param_groups(model: nn.Module, weight_decay: float, skip: set[int] = frozenset()) -> list[dict]:
    """nanoGPT's split: decay matrices and embeddings (≥ 2-D), not biases, norms or the null prefix;
    parameters whose id is in `skip` are left out (another optimizer group takes them)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in skip:
            continue
        (decay if param.dim() >= 2 and name != "null_prefix" else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]



def save_gpt(model: ConditionTransformer, directory) -> None:
    """Native format: config.json + model.safetensors, written atomically."""
    from clipgen.config import to_dict
    from clipgen.models.weights import save_model_dir

    save_model_dir(model, directory, "clipgen-gpt", to_dict(model.config))


def load_gpt(directory, map_location: str = "cpu") -> ConditionTransformer:
    from clipgen.config import from_dict
    from clipgen.models.weights import load_state_strict, read_model_dir

    meta, state = read_model_dir(directory, "clipgen-gpt", "condition-transformer", map_location)
    model = ConditionTransformer(from_dict(GPTConfig, meta))
    load_state_strict(model, state, source=str(directory))
    return model.eval()
