"""Condition-transformer training on token shards (`train_gpt.py`).

`condition.source` says what the transformer is conditioned on:
- `image` (the language-free method): the CLIP image embedding of each image, through the run's
  modality-gap bridge; no caption is read;
- `caption` (the caption-trained baseline): the same CLIP's text embedding of each image's own
  caption (extracted with `--caption-embeddings`); nothing else differs;
- `caption-tokens` (the EasyNLP-style text-token baseline): the caption's BERT-style token ids as
  the prefix, in one sequence with the image codes; the loss is on the image codes only.
A fraction `cond_dropout` of images get the null prefix instead, for classifier-free guidance.
`loss.clip_weight` > 0 adds CLIP-GEN's embedding-reconstruction term (train/clip_loss.py): the
predicted tokens, decoded by the frozen VQGAN, should have the image's own CLIP embedding.
Every `run.image_every` steps a grid is sampled from a fixed list of Chinese prompts, read as the
run reads prompts at inference (the CLIP text tower and the run's bridge, or the caption
tokenizer), with the KV-cache sampler and the VQGAN decoder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from clipgen.config import ConfigError, check_fields, from_dict, save_config
from clipgen.data.loader import derive_seed
from clipgen.data.token_dataset import TokenData
from clipgen.encoders.gap import GapBridge
from clipgen.engine.dist import DistInfo, all_reduce_sum
from clipgen.engine.ema import EMA
from clipgen.engine.logging import RunLogger
from clipgen.engine.schedule import lr_factor
from clipgen.engine.trainer import RunConfig, autocast_context, autocast_dtype
from clipgen.models.gpt import ConditionTransformer, GPTConfig, adamw_param_groups
from clipgen.run_dir import CAPTION_VOCAB_NAME, CONDITION_NAME, MODEL_DIR_NAME, ConditionConfig
from clipgen.sampling import SamplingSettings
from clipgen.train.muon import MuonAndAdamW, is_hidden_matrix

log = logging.getLogger("clipgen.train")


@dataclass
class TokenDataConfig:
    train: str = ""  # token shards from `clipgen extract`
    val: str = ""  # held-out token shards; empty: no validation loss


@dataclass
class GPTOptimConfig:
    lr: float = 6e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.1
    warmup_steps: int = 100
    schedule: Literal["constant", "cosine"] = "cosine"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    # muon: the blocks' matrices take torch.optim.Muon steps at muon_lr, the rest AdamW at lr (train/muon.py);
    # weight_decay applies to the AdamW groups only (Muon's matrices take none, as in the recipe)
    optimizer: Literal["adamw", "muon"] = "adamw"
    muon_lr: float = 0.01  # 0.02 and 0.05 were worse on shapes-zh (BENCHMARKS.md)
    muon_momentum: float = 0.95


@dataclass
class GPTSampleConfig:
    prompts: list[str] = field(default_factory=lambda: ["左上有一个大的红色圆形", "中间有一个小的蓝色正方形"])
    images_per_prompt: int = 4
    guidance_scale: float = 2.0
    top_k: int = 0
    temperature: float = 1.0

    def __post_init__(self):
        # refused when the config is read, not at the first grid or at export (sampling.yaml)
        check_fields(self, [
            ("prompts", all(isinstance(p, str) and p.strip() for p in self.prompts), "prompts with a visible character"),
            ("images_per_prompt", self.images_per_prompt >= 1, "≥ 1"),
        ])  # fmt: skip
        SamplingSettings(guidance_scale=self.guidance_scale, top_k=self.top_k, temperature=self.temperature)


@dataclass
class GPTLossConfig:
    # CLIP-GEN's embedding-reconstruction term (train/clip_loss.py): the weight of 1 - cosine
    # between the CLIP image embedding of the decoded prediction and the image's own, added to
    # the token cross-entropy; 0 turns it off. It needs condition.vqgan and condition.clip.
    clip_weight: float = 0.0
    # how the predicted tokens pass gradients: the argmax with the softmax's gradient, or a
    # Gumbel-softmax sample; both at clip_temperature
    clip_estimator: Literal["straight_through", "gumbel"] = "straight_through"
    clip_temperature: float = 1.0

    def __post_init__(self):
        check_fields(self, [
            ("clip_weight", self.clip_weight >= 0, "≥ 0"),
            ("clip_temperature", self.clip_temperature > 0, "> 0"),
        ])  # fmt: skip


@dataclass
class GPTTrainConfig:
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/gpt"))
    data: TokenDataConfig = field(default_factory=TokenDataConfig)
    model: GPTConfig = field(default_factory=GPTConfig)
    condition: ConditionConfig = field(default_factory=ConditionConfig)
    optim: GPTOptimConfig = field(default_factory=GPTOptimConfig)
    loss: GPTLossConfig = field(default_factory=GPTLossConfig)
    sample: GPTSampleConfig = field(default_factory=GPTSampleConfig)


def make_optimizer(model: nn.Module, optim: GPTOptimConfig, fused: bool = False) -> torch.optim.Optimizer | MuonAndAdamW:
    """AdamW over nanoGPT's parameter groups, or torch's Muon for the blocks' matrices with AdamW for
    the rest (optim.optimizer; train/muon.py). Each group's lr is its base rate; train_step scales it
    by the schedule."""
    if optim.optimizer == "adamw":
        groups = adamw_param_groups(model, optim.weight_decay)
        return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), fused=fused)
    if optim.optimizer != "muon":
        raise ValueError(f"unknown optimizer {optim.optimizer!r}: adamw or muon")
    hidden = [p for name, p in model.named_parameters() if is_hidden_matrix(name, p)]
    if not hidden:  # e.g. a DDP- or compile-wrapped model, whose names do not start with blocks.
        raise ValueError("optim.optimizer=muon found no transformer-block matrices: pass the unwrapped model")
    rest = adamw_param_groups(model, optim.weight_decay, skip={id(p) for p in hidden})
    groups = [{"params": hidden, "lr": optim.muon_lr, "muon": True}] + [{**group, "lr": optim.lr} for group in rest]
    return MuonAndAdamW(groups, betas=optim.betas, momentum=optim.muon_momentum, fused=fused)


def _read_lines(path: str) -> list[str]:
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    texts = [line for line in lines if line]
    if not texts:
        raise ValueError(f"{path} holds no text")
    return texts


def _load_tokens(spec: str, key: str) -> TokenData:
    if not spec.strip():
        raise ConfigError(f"{key} is empty: set it to the token shards `clipgen extract` wrote")
    try:
        return TokenData.load(spec)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{key}: {err}") from None


class GPTTask:
    def __init__(self, cfg: GPTTrainConfig, info: DistInfo):
        self.cfg, self.info, self.device = cfg, info, info.device
        self.amp_dtype = autocast_dtype(cfg.run, self.device)
        self.train_data = _load_tokens(cfg.data.train, "data.train")
        self.val_data = _load_tokens(cfg.data.val, "data.val") if cfg.data.val else None
        self._check_shapes()
        self._check_vqgan()
        self._check_clip_loss()
        self.clip = self._load_clip() if cfg.condition.clip else None
        self._vqgan = None  # loaded at the first sample grid or for the CLIP loss
        self.clip_loss = self._build_clip_loss()
        self.bridge = self._build_bridge()
        self.caption_vocab = b""
        self.caption_tokenizer, self.caption_ids = self._tokenize_captions()
        torch.manual_seed(cfg.run.seed)
        self.model = ConditionTransformer(cfg.model).to(self.device)
        self.opt = make_optimizer(self.model, cfg.optim, fused=self.device.type == "cuda")
        self.ema = EMA(self.model, cfg.run.ema_decay) if cfg.run.ema_decay > 0 else None
        forward_model = torch.compile(self.model) if cfg.run.compile else self.model
        self.model_ddp = DDP(forward_model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if info.distributed else forward_model  # fmt: skip

    def _check_shapes(self) -> None:
        cfg, data = self.cfg.model, self.train_data
        if data.codes.shape[1] != cfg.block_size:
            raise ConfigError(f"model.block_size {cfg.block_size} != {data.codes.shape[1]} tokens per image in {self.cfg.data.train}")
        source = self.cfg.condition.source
        if source == "caption" and any(d is not None and d.text is None for d in (data, self.val_data)):
            raise ConfigError("condition.source: caption needs token shards extracted with --caption-embeddings, "
                              "from images that all have a caption")  # fmt: skip
        if source != "image" and self.cfg.condition.gap.bridge != "none":
            raise ConfigError(f"condition.source: {source} reads text in training and at inference, so there is no "
                              "modality gap to bridge: set condition.gap.bridge: none")  # fmt: skip
        if (source == "caption-tokens") != (cfg.text_vocab_size > 0):
            raise ConfigError("condition.source: caption-tokens and model.text_vocab_size > 0 go together")
        if source != "caption-tokens" and data.clip.shape[1] != cfg.cond_dim:
            raise ConfigError(f"model.cond_dim {cfg.cond_dim} != CLIP width {data.clip.shape[1]} in {self.cfg.data.train}")
        if int(data.codes.max()) >= cfg.vocab_size:
            raise ConfigError(f"model.vocab_size {cfg.vocab_size} is smaller than the codes in {self.cfg.data.train}")

    def _check_vqgan(self) -> None:
        """condition.vqgan decodes the sample grids and, later, every image drawn from this run: a
        directory that is not a VQGAN, or one whose tokens are not the model's, is refused at the
        start (from its config.json; the weights load at the first grid)."""
        from clipgen.models.vqgan import FORMAT_TAG, VQGANConfig, vqgan_model_dir
        from clipgen.models.weights import CONFIG_NAME, WEIGHTS_NAME

        named = self.cfg.condition.vqgan
        if not named:
            return
        model_dir = vqgan_model_dir(named)
        if not ((model_dir / CONFIG_NAME).is_file() and (model_dir / WEIGHTS_NAME).is_file()):
            raise ConfigError(f"condition.vqgan {named} holds no VQGAN: neither it nor its model/ (where a finished "
                              f"train_vqgan.py run exports one) has {CONFIG_NAME} and {WEIGHTS_NAME}")  # fmt: skip
        meta = json.loads((model_dir / CONFIG_NAME).read_text(encoding="utf-8"))
        found = meta.pop("format", None)
        if found != FORMAT_TAG:
            what = f"a {found} model" if found else "no clipgen model"
            raise ConfigError(f"condition.vqgan {named} holds {what}, not a VQGAN ({model_dir / CONFIG_NAME}); "
                              "name the VQGAN run the token shards were extracted with")  # fmt: skip
        vqgan, model = from_dict(VQGANConfig, meta), self.cfg.model
        if vqgan.token_grid**2 != model.block_size or vqgan.n_embed < model.vocab_size:
            raise ConfigError(f"condition.vqgan {named} makes {vqgan.token_grid}x{vqgan.token_grid} tokens from "
                              f"{vqgan.n_embed} codes; model.block_size {model.block_size} and model.vocab_size "
                              f"{model.vocab_size} do not fit it")  # fmt: skip

    def _check_clip_loss(self) -> None:
        if self.cfg.loss.clip_weight <= 0:
            return
        condition = self.cfg.condition
        if condition.source == "caption-tokens":
            raise ConfigError("loss.clip_weight > 0 reconstructs a CLIP image embedding, and condition.source: "
                              "caption-tokens reads caption ids with no embedding: set loss.clip_weight: 0")  # fmt: skip
        if not condition.vqgan or not condition.clip:
            raise ConfigError("loss.clip_weight > 0 decodes the predicted tokens with condition.vqgan and embeds them "
                              "with condition.clip: set both (the VQGAN and CLIP the token shards were extracted with)")  # fmt: skip

    def _build_clip_loss(self):
        loss = self.cfg.loss
        if loss.clip_weight <= 0:
            return None
        from clipgen.train.clip_loss import ClipReconstructionLoss

        width = self.train_data.clip.shape[1]
        if self.clip.dim != width:
            raise ConfigError(f"loss.clip_weight: condition.clip gives {self.clip.dim}-d embeddings, the token shards "
                              f"hold {width}-d ones: name the CLIP they were extracted with")  # fmt: skip
        return ClipReconstructionLoss(self._frozen_vqgan(), self.clip, loss.clip_estimator, loss.clip_temperature)

    def _frozen_vqgan(self):
        """condition.vqgan, loaded once: eval mode, no gradients, never in the checkpoint."""
        from clipgen.encoders.base import frozen
        from clipgen.models.vqgan import VQGAN, vqgan_model_dir

        if self._vqgan is None:
            self._vqgan = frozen(VQGAN.from_pretrained(vqgan_model_dir(self.cfg.condition.vqgan)).to(self.device))
        return self._vqgan

    def _load_clip(self):
        from clipgen.encoders import load_clip_spec

        return load_clip_spec(self.cfg.condition.clip, device=self.device)

    def _build_bridge(self) -> GapBridge:
        gap = self.cfg.condition.gap
        if gap.bridge == "retrieval":
            return GapBridge(gap, bank=GapBridge.bank_from(self.train_data.clip, gap.bank_size, self.cfg.run.seed))
        if gap.bridge != "c3":
            return GapBridge(gap)
        if self.clip is None or not gap.text_file:
            raise ConfigError("the c3 bridge needs condition.clip and condition.gap.text_file (unpaired text)")
        image_mean = torch.nn.functional.normalize(self.train_data.clip.float(), dim=-1).mean(0)
        text_mean = self.clip.encode_text(_read_lines(gap.text_file)).mean(0).cpu()
        return GapBridge(gap, image_mean, text_mean)

    def _tokenize_captions(self):
        """The text-token baseline's tokenizer and every caption's ids (train, val), once."""
        if self.cfg.condition.source != "caption-tokens":
            return None, {}
        from clipgen.encoders.caption_tokens import CaptionTokenizer

        if not self.cfg.condition.caption_vocab:
            raise ConfigError("condition.source: caption-tokens needs condition.caption_vocab (a BERT-style vocab.txt)")
        tokenizer = CaptionTokenizer(self.cfg.condition.caption_vocab, self.cfg.model.n_prefix)
        self.caption_vocab = tokenizer.vocab_file.read_bytes()  # exported as read now, not as the file is later
        if tokenizer.vocab_size != self.cfg.model.text_vocab_size:
            raise ConfigError(f"model.text_vocab_size {self.cfg.model.text_vocab_size} != "
                              f"{tokenizer.vocab_size} tokens in {self.cfg.condition.caption_vocab}")  # fmt: skip
        ids = {"train": tokenizer.encode(self.train_data.captions())}
        if self.val_data is not None:
            ids["val"] = tokenizer.encode(self.val_data.captions())
        return tokenizer, ids

    # --- training --------------------------------------------------------------------------------

    def train_batches(self, batches_done: int, position: None = None) -> Iterator[dict[str, Any]]:
        # batch n of the run is a pure function of (seed, rank, n): resuming starts at n at once
        accum, n = self.cfg.run.grad_accum, batches_done
        while True:
            yield self.train_data.batch(self.cfg.run.batch_size, self.cfg.run.seed, self.info.rank, n // accum, n % accum)
            n += 1

    def data_position(self) -> None:
        return None  # nothing to record: the batches follow from their number

    def _condition(self, batch: dict, split: str, step: int, micro: int, train: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        seed = derive_seed(self.cfg.run.seed, self.info.rank, step, micro, 7)
        generator = torch.Generator(self.device).manual_seed(seed)
        source = self.cfg.condition.source
        if source == "caption-tokens":
            cond = self.caption_ids[split][batch["index"]].to(self.device)
        elif source == "caption":
            cond = torch.nn.functional.normalize(batch["text"].to(self.device), dim=-1)
        else:
            cond = self.bridge.for_training(torch.nn.functional.normalize(batch["clip"].to(self.device), dim=-1), generator)
        if not train or self.cfg.condition.cond_dropout <= 0:
            return cond, None
        drop = torch.rand(len(cond), generator=generator, device=self.device) < self.cfg.condition.cond_dropout
        return cond, drop

    def _clip_term(self, logits: torch.Tensor, batch: dict, drop: torch.Tensor | None, step: int, micro: int) -> torch.Tensor | None:
        """The CLIP loss over the rows that kept their condition (a dropped row has none to match),
        or None when it is off or every row was dropped. Its target is the image's own embedding,
        not the bridge's noised condition: the decoded prediction should be this image, and with
        condition.source: caption too, the image embedding is what its pixels can reach."""
        if self.clip_loss is None:
            return None
        dropped = 0 if drop is None else int(drop.sum())
        if dropped == len(logits):
            return None
        target = torch.nn.functional.normalize(batch["clip"].to(self.device).float(), dim=-1)
        if dropped:  # else every row takes part, and indexing would only copy the logits
            logits, target = logits[~drop], target[~drop]
        generator = None  # only Gumbel noise draws
        if self.cfg.loss.clip_estimator == "gumbel":
            generator = torch.Generator(self.device).manual_seed(derive_seed(self.cfg.run.seed, self.info.rank, step, micro, 11))
        with self._autocast():
            return self.clip_loss(logits, target, generator)

    def _autocast(self):
        return autocast_context(self.device, self.amp_dtype)

    def train_step(self, micro_batches: list[dict[str, Any]], step: int) -> dict[str, float]:
        optim = self.cfg.optim
        factor = lr_factor(step, warmup_steps=optim.warmup_steps, total_steps=self.cfg.run.max_steps,
                           schedule=optim.schedule, min_ratio=optim.min_lr_ratio)  # fmt: skip
        for group in self.opt.param_groups:
            group["lr"] = (optim.muon_lr if group.get("muon") else optim.lr) * factor
        self.model.train()
        total, clip_terms = 0.0, []  # the CLIP term of each micro-batch that had one
        for micro, batch in enumerate(micro_batches):
            last = micro == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last or not self.info.distributed else self.model_ddp.no_sync()
            cond, drop = self._condition(batch, "train", step, micro, train=True)
            codes = batch["codes"].to(self.device)
            with sync:
                with self._autocast():
                    logits = self.model_ddp(cond, codes, drop)
                loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), codes.flatten())
                objective = loss
                clip_term = self._clip_term(logits, batch, drop, step, micro)
                if clip_term is not None:
                    objective = loss + self.cfg.loss.clip_weight * clip_term
                    clip_terms.append(clip_term.item())
                (objective / len(micro_batches)).backward()
            total += loss.item() / len(micro_batches)
        if optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), optim.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, step)
        logged = {"loss": total, "lr": optim.lr * factor}  # the token cross-entropy alone, as without the CLIP term
        if clip_terms:  # the mean over the micro-batches it was computed on, not over all of them
            logged["clip_loss"] = sum(clip_terms) / len(clip_terms)
        if optim.optimizer == "muon":
            logged["muon_lr"] = optim.muon_lr * factor
        return logged

    def eval_model(self) -> ConditionTransformer:
        return self.ema.model if self.ema is not None else self.model

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Token cross-entropy on held-out images, conditioned as in training (the bridge's noise
        included, drawn from a fixed seed, so every evaluation sees the same conditions)."""
        if self.val_data is None:
            return {}
        model = self.eval_model().eval()
        sums = torch.zeros(2, dtype=torch.float64)  # summed token loss, tokens
        for i, batch in enumerate(self.val_data.batches_in_order(self.cfg.run.batch_size, self.info.rank, self.info.world_size)):
            cond, _ = self._condition(batch, "val", 0, i, train=False)
            codes = batch["codes"].to(self.device)
            with self._autocast():
                logits = model(cond, codes)
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), codes.flatten(), reduction="sum")
            sums += torch.tensor([loss.item(), codes.numel()], dtype=torch.float64)
        all_reduce_sum(sums)
        return {"val_loss": (sums[0] / sums[1]).item()}

    @torch.no_grad()
    def log_images(self, logger: RunLogger, step: int) -> None:
        cfg = self.cfg
        reads_prompts = self.clip is not None or self.caption_tokenizer is not None
        if not logger.enabled or not reads_prompts or not cfg.condition.vqgan or not cfg.sample.prompts:
            return
        vqgan = self._frozen_vqgan()
        prompts = [p for p in cfg.sample.prompts for _ in range(cfg.sample.images_per_prompt)]
        from clipgen.pipeline import prompt_condition

        cond = prompt_condition(prompts, self.clip, self.bridge, self.caption_tokenizer).to(self.device)
        tokens = self.eval_model().eval().sample(
            cond, guidance_scale=cfg.sample.guidance_scale, top_k=cfg.sample.top_k, temperature=cfg.sample.temperature,
            generator=torch.Generator(self.device).manual_seed(cfg.run.seed),
        )  # fmt: skip
        grid = vqgan.config.token_grid
        logger.images(step, "samples", vqgan.decode_indices(tokens.view(-1, grid, grid)))

    # --- state -----------------------------------------------------------------------------------

    def _reads(self) -> dict[str, str]:
        """What the model reads: a resumed run must read the same (the model config alone does not
        tell image from caption embeddings, nor one vocab from another of the same size)."""
        return {"source": self.cfg.condition.source, "caption_vocab_sha256": hashlib.sha256(self.caption_vocab).hexdigest()}

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "reads": self._reads()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("reads", {"source": "image", "caption_vocab_sha256": hashlib.sha256(b"").hexdigest()})
        if saved != self._reads():
            raise ConfigError(f"the checkpoint's model was trained reading {saved}, this config reads {self._reads()}")
        saved_optimizer = "muon" if any(group.get("muon") for group in state["opt"]["param_groups"]) else "adamw"
        if saved_optimizer != self.cfg.optim.optimizer:
            raise ConfigError(f"the checkpoint holds {saved_optimizer} optimizer state; this config says "
                              f"optim.optimizer={self.cfg.optim.optimizer}")  # fmt: skip
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])

    def export(self, run_dir: Path) -> None:
        """model/ (weights + config.json), gap.json, condition.yaml naming the VQGAN and CLIP,
        sampling.yaml (the settings of the run's sample grids, until an evaluation finds better),
        and for the text-token baseline its own copy of the caption vocab file."""
        from clipgen.engine.atomic import atomic_write
        from clipgen.models.gpt import save_gpt
        from clipgen.sampling import write_run_sampling

        save_gpt(self.eval_model(), run_dir / MODEL_DIR_NAME)
        self.bridge.save(run_dir)
        save_config(self.cfg.condition, run_dir / CONDITION_NAME)
        sample = self.cfg.sample
        write_run_sampling(run_dir, SamplingSettings(guidance_scale=sample.guidance_scale, top_k=sample.top_k, temperature=sample.temperature))
        if self.caption_tokenizer is not None:
            with atomic_write(run_dir / CAPTION_VOCAB_NAME) as tmp:
                tmp.write_bytes(self.caption_vocab)

