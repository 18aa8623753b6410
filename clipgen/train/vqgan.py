"""VQGAN training: what `train_vqgan.py` runs on top of the shared loop in `clipgen.engine`."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from clipgen.config import ConfigError
from clipgen.data.loader import ImageDataConfig, expand_shards, make_image_loader
from clipgen.engine.dist import DistInfo, all_reduce_sum
from clipgen.engine.ema import EMA
from clipgen.engine.logging import RunLogger
from clipgen.engine.schedule import lr_factor
from clipgen.engine.trainer import RunConfig, autocast_context, autocast_dtype
from clipgen.eval.features import feature_fn
from clipgen.eval.reconstruction import evaluate_reconstruction
from clipgen.models.discriminator import PatchDiscriminator
from clipgen.models.lpips import LPIPS
from clipgen.models.quantize import codebook_stats
from clipgen.models.vq_loss import LossConfig, adaptive_gan_weight, hinge_d_loss, reconstruction_loss
from clipgen.models.vqgan import VQGAN, VQGANConfig
from clipgen.train.image_stream import TrainsOnImageShards

log = logging.getLogger("clipgen.train")


@dataclass
class OptimConfig:
    lr: float = 4.5e-6 * 32  # taming's base rate × its batch size
    disc_lr: float = 0.0  # 0: same as lr
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])  # taming's GAN-friendly betas
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"  # after warm-up, until run.max_steps
    min_lr_ratio: float = 0.1  # where the cosine ends, as a fraction of lr
    grad_clip: float = 0.0  # 0: no clipping


@dataclass
class EvalConfig:
    shards: str = ""  # held-out shards; empty: no periodic eval
    max_images: int = 2000  # per eval, summed over ranks' shares (0: all)
    fd_features: Literal["pixels", "vgg"] = "pixels"  # vgg needs loss.perceptual_weights


@dataclass
class VQGANTrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    model: VQGANConfig = field(default_factory=VQGANConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


def _adam(params, lr: float, optim: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        params, lr=lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay, fused=device.type == "cuda"
    )


class VQGANTask(TrainsOnImageShards):
    def __init__(self, cfg: VQGANTrainConfig, info: DistInfo):
        if cfg.data.image_size != cfg.model.resolution:
            log.warning("data.image_size %d differs from model.resolution %d", cfg.data.image_size, cfg.model.resolution)
        self.cfg, self.info = cfg, info
        self._check_paths()
        self.device = info.device
        self.amp_dtype = autocast_dtype(cfg.run, self.device)
        torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
        self.model = VQGAN(cfg.model).to(self.device)
        self.disc = PatchDiscriminator(cfg.model.out_ch, cfg.loss.disc_channels, cfg.loss.disc_layers).to(self.device)
        torch.manual_seed(cfg.run.seed + info.rank)
        self.lpips = LPIPS.from_file(cfg.loss.perceptual_weights).to(self.device) if cfg.loss.perceptual_weight > 0 else None
        self.ema = EMA(self.model, cfg.run.ema_decay) if cfg.run.ema_decay > 0 else None
        self.opt_g = _adam(self.model.parameters(), cfg.optim.lr, cfg.optim, self.device)
        self.opt_d = _adam(self.disc.parameters(), cfg.optim.disc_lr or cfg.optim.lr, cfg.optim, self.device)
        forward_model = torch.compile(self.model) if cfg.run.compile else self.model
        if info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model_ddp = DDP(forward_model, device_ids=ids)
            self.disc_ddp = DDP(self.disc, device_ids=ids)
        else:
            self.model_ddp, self.disc_ddp = forward_model, self.disc
        self._last_batch: torch.Tensor | None = None

    def _check_paths(self) -> None:
        """Fail at start-up, not at the first eval hours later."""
        cfg = self.cfg
        expand_shards(cfg.data.shards)
        if cfg.eval.shards:
            expand_shards(cfg.eval.shards)
        if cfg.eval.fd_features == "vgg" and cfg.loss.perceptual_weight <= 0:
            raise ConfigError("eval.fd_features: vgg uses the LPIPS network: set loss.perceptual_weights (and weight > 0)")

    # --- data ------------------------------------------------------------------------------------

    # --- one optimizer step ----------------------------------------------------------------------

    def _autocast(self):
        return autocast_context(self.device, self.amp_dtype)

    def _lr_scale(self, step: int) -> float:
        optim = self.cfg.optim
        return lr_factor(step, warmup_steps=optim.warmup_steps, total_steps=self.cfg.run.max_steps,
                         schedule=optim.schedule, min_ratio=optim.min_lr_ratio)  # fmt: skip

    def train_step(self, micro_batches: list[dict[str, Any]], step: int) -> dict[str, float]:
        cfg = self.cfg
        gan_on = cfg.loss.disc_weight > 0 and step >= cfg.loss.disc_start
        for opt, base in ((self.opt_g, cfg.optim.lr), (self.opt_d, cfg.optim.disc_lr or cfg.optim.lr)):
            for group in opt.param_groups:
                group["lr"] = base * self._lr_scale(step)
        self.model.train()
        sums: dict[str, float] = {}
        n = len(micro_batches)
        for i, batch in enumerate(micro_batches):
            x = batch["image"].to(self.device)
            last = i == n - 1
            # accumulate locally; only the last micro-batch all-reduces gradients
            sync = contextlib.nullcontext() if last or not self.info.distributed else self.model_ddp.no_sync()
            with sync:
                metrics = self._generator_backward(x, gan_on, scale=1.0 / n)
            if gan_on:
                sync_d = contextlib.nullcontext() if last or not self.info.distributed else self.disc_ddp.no_sync()
                with sync_d:
                    metrics.update(self._discriminator_backward(x, metrics.pop("_xrec"), scale=1.0 / n))
            metrics.pop("_xrec", None)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v / n
        self._clip_and_step(self.opt_g, self.model)
        if gan_on:
            self._clip_and_step(self.opt_d, self.disc)
        if self.ema is not None:
            self.ema.update(self.model, step)
        quantizer = self.model.quantize
        if quantizer.config.restart_every and (step + 1) % quantizer.config.restart_every == 0:
            moved = quantizer.restart_dead_codes()
            if self.ema is not None:  # an average of the old and the new code is neither
                self.ema.model.quantize.embedding.weight.data[moved] = quantizer.embedding.weight.data[moved]
            sums["restarted_codes"] = float(len(moved))
        self._last_batch = x[:16].detach()
        return sums

    def _generator_backward(self, x: torch.Tensor, gan_on: bool, scale: float) -> dict[str, Any]:
        cfg = self.cfg.loss
        with self._autocast():
            xrec, quantized = self.model_ddp(x)
        rec_loss, parts = reconstruction_loss(cfg, x, xrec, self.lpips)
        loss = rec_loss + cfg.codebook_weight * quantized.loss
        metrics = {k: v.item() for k, v in parts.items()}
        metrics.update(rec=rec_loss.item(), vq=quantized.loss.item())
        metrics.update(codebook_stats(quantized.indices, self.cfg.model.n_embed))
        if gan_on:
            # the generator's view of the discriminator must not train it: freeze D and call the
            # bare module, so no gradient (and no DDP reduction) reaches its parameters
            self.disc.requires_grad_(False)
            with self._autocast():
                logits_fake = self.disc(xrec)
            self.disc.requires_grad_(True)
            g_loss = -logits_fake.float().mean()
            weight = adaptive_gan_weight(rec_loss, g_loss, self.model.decoder.last_layer) * cfg.disc_weight
            loss = loss + weight * g_loss
            metrics.update(g_loss=g_loss.item(), gan_weight=weight.item())
        (loss * scale).backward()
        metrics["loss"] = loss.item()
        metrics["_xrec"] = xrec.detach()
        return metrics

    def _discriminator_backward(self, x: torch.Tensor, xrec: torch.Tensor, scale: float) -> dict[str, float]:
        with self._autocast():
            logits = self.disc_ddp(torch.cat([x, xrec]))  # one pass keeps BatchNorm stats joint
        logits_real, logits_fake = logits.float().chunk(2)
        d_loss = hinge_d_loss(logits_real, logits_fake)
        (d_loss * scale).backward()
        return {"d_loss": d_loss.item(), "logits_real": logits_real.mean().item(), "logits_fake": logits_fake.mean().item()}

    def _clip_and_step(self, opt: torch.optim.Optimizer, module: torch.nn.Module) -> None:
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    # --- evaluation and images -------------------------------------------------------------------

    def eval_model(self) -> VQGAN:
        return self.ema.model if self.ema is not None else self.model

    def evaluate(self, step: int) -> dict[str, float]:
        if not self.cfg.eval.shards:
            return {}
        loader = make_image_loader(
            dataclasses.replace(self.cfg.data, shards=self.cfg.eval.shards),
            batch_size=self.cfg.run.batch_size, seed=self.cfg.run.seed,
            rank=self.info.rank, world_size=self.info.world_size, train=False,
        )  # fmt: skip
        model = self.eval_model()
        model.eval()
        features = feature_fn(self.cfg.eval.fd_features, self.lpips)
        metrics = evaluate_reconstruction(
            model, loader, self.device, features, self.cfg.eval.fd_features, self.amp_dtype,
            max_images=self.cfg.eval.max_images // max(1, self.info.world_size),
        )  # fmt: skip
        metrics["bad_samples"] = all_reduce_sum(torch.tensor([float(loader.bad_samples.count)])).item()
        return metrics

    @torch.no_grad()
    def log_images(self, logger: RunLogger, step: int) -> None:
        if self._last_batch is None or not logger.enabled:
            return
        model = self.eval_model()
        model.eval()
        with self._autocast():
            xrec, _ = model(self._last_batch)
        # originals on the left half of each row pair, reconstructions beside them
        pairs = torch.stack([self._last_batch, xrec.float().clamp(-1, 1)], dim=1).flatten(0, 1)
        logger.images(step, "reconstructions", pairs)

    # --- state -----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "disc": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "code_uses": self.model.quantize.total_uses().cpu(),  # since the last restart
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.disc.load_state_dict(state["disc"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.model.quantize.load_uses(state["code_uses"].to(self.device), self.info.is_main)
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])

    def export(self, run_dir: Path) -> None:
        """The run's model for later stages: EMA weights when EMA is on, in the native format."""
        self.eval_model().save_pretrained(run_dir / "model")
        log.info("exported %s", run_dir / "model")
