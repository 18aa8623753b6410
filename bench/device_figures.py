"""Issue 12, part 2: the GPU figures in one short run, prepared on a CPU for the session that has a GPU.

    python bench/device_figures.py                          # on a GPU, every section at the real shapes
    python bench/device_figures.py --sections train sample  # some of them
    python bench/device_figures.py --tiny                   # tiny shapes on any device: that it all runs (the tests)

Sections, each printing its figures with the device's name:
- train: the condition transformer of configs/gpt/medium_f16_16384.yaml (24 × 1024) under bf16
  autocast with SDPA attention: the largest batch that fits (doubling until out of memory, eager,
  fused AdamW), then tokens/s and MFU at that batch for eager + fused AdamW, torch.compile + fused
  AdamW, and torch.compile + the config's Muon. MFU = tokens/s × FLOPs per token / the device's
  dense bf16 peak (`--peak-tflops`, or the datasheet figure for the GPUs in PEAK_BF16_TFLOPS);
  FLOPs per token = 6 × the parameters a token's pass multiplies by (blocks, final norm, head) +
  12 × layers × width × positions (attention, causal counted in full: PaLM's convention).
- sample: 256 tokens at batch 1 and 64 with the KV cache, with the fixed-shape cached step
  replayed as a CUDA graph (`static_cache=True`, models/static_decode.py), and with
  `kv_cache=False` (the naive re-run), float32 and bfloat16 weights, ms per image; against the
  memory-bandwidth limit, the weight bytes a cached step reads ÷ the device's measured copy
  bandwidth (bytes read + written).
- vqgan: training steps of configs/vqgan/f16_16384.yaml (GAN on from the first step, LPIPS left
  out: its weights are a local file) at bf16 autocast, images/s by batch size.
- extract: what `clipgen extract` computes per image, the VQGAN encoder to codes and a CLIP image
  tower (open_clip ViT-B-32, random weights: the time, not the output, is measured), images/s;
  and the extract-then-train speed-up: a GPT training step on stored codes and embeddings against
  the same step plus encoding its images (as HFAiLab/clip-gen trains). Image decoding is left out
  of both.

Nothing is downloaded: every model has random weights. Without `--tiny` on a CPU the shapes are
the real ones and a section takes hours; the script says so and stops.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_sampler_steps import step_weight_bytes  # noqa: E402
from bench.bench_vqgan import bench_overrides, time_steps as vqgan_step_s  # noqa: E402
from bench.machine import cpu_name  # noqa: E402
from clipgen.config import load_config  # noqa: E402
from clipgen.models.gpt import ConditionTransformer  # noqa: E402
from clipgen.train.gpt import GPTTrainConfig, make_optimizer  # noqa: E402
from clipgen.train.vqgan import VQGANTrainConfig  # noqa: E402

SECTIONS = ("train", "sample", "vqgan", "extract")
# dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, TFLOPS; matched in order
# against torch.cuda.get_device_name()
PEAK_BF16_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0), ("L40S", 362.1))
GPT_CONFIG, VQGAN_CONFIG = ROOT / "configs/gpt/medium_f16_16384.yaml", ROOT / "configs/vqgan/f16_16384.yaml"
TINY_GPT = ["model.n_layer=2", "model.n_head=2", "model.n_embd=64", "model.vocab_size=512", "model.block_size=64", "model.cond_dim=32"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn, device: torch.device, warmup: int, calls: int) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / calls


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given:
        return given
    name = device_name(device) if device.type == "cuda" else ""
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


def out_of_memory(err: BaseException) -> bool:
    """torch's own OutOfMemoryError, or cuBLAS/cuDNN failing to allocate (a plain RuntimeError)."""
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "ALLOC_FAILED" in text


def free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


# --- train -----------------------------------------------------------------------------------------


def gpt_train_config(tiny: bool) -> GPTTrainConfig:
    return load_config(GPTTrainConfig, GPT_CONFIG, TINY_GPT if tiny else [])


def flops_per_token(model: ConditionTransformer) -> float:
    cfg = model.config
    multiplied = sum(p.numel() for p in (*model.blocks.parameters(), *model.ln_f.parameters(), *model.head.parameters()))
    positions = cfg.n_prefix + cfg.block_size - 1
    return 6 * multiplied + 12 * cfg.n_layer * cfg.n_embd * positions


def gpt_step(model, optimizer, batch: int, device: torch.device, forward=None):
    """A closure: one training step on random conditions and codes (forward under bf16 autocast,
    cross-entropy, backward, optimizer)."""
    cfg = model.config
    generator = torch.Generator(device).manual_seed(0)
    cond = F.normalize(torch.randn(batch, cfg.cond_dim, device=device, generator=generator), dim=-1)
    codes = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), device=device, generator=generator)
    forward = model if forward is None else forward

    def step():
        with autocast(device):
            logits = forward(cond, codes)
        F.cross_entropy(logits.float().flatten(0, 1), codes.flatten()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def fused_adamw(model, train_cfg: GPTTrainConfig, device: torch.device):
    """The trainer's AdamW (nanoGPT's groups), fused on a GPU, whatever optimizer the config names."""
    return make_optimizer(model, replace(train_cfg.optim, optimizer="adamw"), fused=device.type == "cuda")


def largest_batch(train_cfg: GPTTrainConfig, device: torch.device, start: int, limit: int) -> int:
    """The largest power-of-two batch (from `start`, at most `limit`) whose eager step fits."""
    fits, batch = 0, start
    while batch <= limit:
        model = ConditionTransformer(train_cfg.model).to(device)
        try:
            gpt_step(model, fused_adamw(model, train_cfg, device), batch, device)()
            synchronize(device)
            fits, batch = batch, batch * 2
        except RuntimeError as err:  # torch.OutOfMemoryError is one
            if not out_of_memory(err):
                raise
            break
        finally:
            del model
            free_memory(device)
    if not fits:
        raise SystemExit(f"device_figures: not even batch {start} fits on {device_name(device)}")
    return fits


def train_section(args, device: torch.device) -> None:
    train_cfg = gpt_train_config(args.tiny)
    batch = largest_batch(train_cfg, device, start=2 if args.tiny else 8, limit=4 if args.tiny else 1024)
    torch.manual_seed(0)
    model = ConditionTransformer(train_cfg.model).to(device)
    per_token = flops_per_token(model)
    positions = train_cfg.model.n_prefix + train_cfg.model.block_size - 1
    peak = peak_tflops(device, args.peak_tflops)
    print(f"\n## train: {train_cfg.model.n_layer} × {train_cfg.model.n_embd}, {model.num_params() / 1e6:.2f}M params, "
          f"largest batch that fits {batch} (eager, fused AdamW), {positions} positions, "
          f"{per_token / 1e6:.1f} MFLOP per token; bf16 peak {f'{peak} TFLOPS' if peak else 'unknown (--peak-tflops)'}")
    print(f"{'variant':<28} {'ms/step':>9} {'tokens/s':>10} {'MFU':>6}")
    compiled = model if args.no_compile else torch.compile(model)
    variants = (("eager + fused AdamW", model, lambda: fused_adamw(model, train_cfg, device)),
                ("compile + fused AdamW", compiled, lambda: fused_adamw(model, train_cfg, device)),
                ("compile + Muon (config)", compiled, lambda: make_optimizer(model, train_cfg.optim, fused=device.type == "cuda")))
    for name, forward, make in variants:  # one optimizer's state in memory at a time, as in training
        try:
            seconds = seconds_per_call(gpt_step(model, make(), batch, device, forward), device, args.warmup, args.steps)
        except RuntimeError as err:  # at the edge batch, compile or Muon may need more memory
            if not out_of_memory(err):
                raise
            print(f"{name:<28} out of memory at batch {batch}", flush=True)
            continue
        finally:
            model.zero_grad(set_to_none=True)
            free_memory(device)
        tokens_s = batch * positions / seconds
        mfu = f"{tokens_s * per_token / (peak * 1e12):.1%}" if peak else "–"
        print(f"{name:<28} {1000 * seconds:>9.1f} {tokens_s:>10.0f} {mfu:>6}", flush=True)


# --- sample ----------------------------------------------------------------------------------------


def copy_gbps(device: torch.device, gib: float) -> float:
    """Bytes read + written per second by a device copy, best of five."""
    src = torch.ones(int(gib * 2**28), device=device)
    dst = torch.empty_like(src)
    best = min(seconds_per_call(lambda: dst.copy_(src), device, 1, 1) for _ in range(5))
    return 2 * src.numel() * src.element_size() / best / 1e9


def sample_section(args, device: torch.device) -> None:
    model_cfg = gpt_train_config(args.tiny).model
    torch.manual_seed(0)
    base = ConditionTransformer(model_cfg).to(device).eval()
    tokens = model_cfg.block_size
    bandwidth = copy_gbps(device, 0.125 if args.tiny else 1.0)
    print(f"\n## sample: {model_cfg.n_layer} × {model_cfg.n_embd}, {tokens} tokens, guidance 1, top-k 0; device copy "
          f"{bandwidth:.0f} GB/s (read + written); the limit counts the weights a step reads, not the KV cache "
          f"(which matters at batch 64); a graph's capture is inside its time")
    print(f"{'weights':<9} {'batch':>5} {'sampler':<12} {'ms/image':>9} {'ms/token':>9} {'limit ms/token':>15} {'of limit':>9}")
    # the fixed-shape step is one replayed CUDA graph on a GPU, eager on a CPU (models/static_decode.py)
    static = "KV + graph" if device.type == "cuda" else "KV static"
    samplers = {"KV cache": {}, static: {"static_cache": True}, "naive": {"kv_cache": False}}
    for dtype in (torch.float32, torch.bfloat16):
        model = base.to(dtype) if dtype != torch.float32 else base
        limit_ms = step_weight_bytes(model) / (bandwidth * 1e9) * 1000
        for batch in args.sample_batches:
            cond = F.normalize(torch.randn(batch, model_cfg.cond_dim, device=device), dim=-1)
            for sampler, options in samplers.items():
                sample = lambda: model.sample(cond, generator=torch.Generator(device).manual_seed(0), **options)  # noqa: E731
                seconds = seconds_per_call(sample, device, 1, 1 if sampler == "naive" else 2)
                per_token_ms = 1000 * seconds / tokens
                share = f"{limit_ms / per_token_ms:.0%}" if sampler != "naive" else "–"
                print(f"{str(dtype).removeprefix('torch.'):<9} {batch:>5} {sampler:<12} "
                      f"{1000 * seconds / batch:>9.2f} {per_token_ms:>9.3f} {limit_ms:>15.3f} {share:>9}", flush=True)


# --- vqgan -----------------------------------------------------------------------------------------


def vqgan_section(args, device: torch.device) -> None:
    config = ROOT / "configs/vqgan/shapes32.yaml" if args.tiny else VQGAN_CONFIG
    overrides = bench_overrides(gan=True) + [f"run.device={device.type}", "run.precision=bf16"]
    cfg = load_config(VQGANTrainConfig, config, overrides)
    print(f"\n## vqgan: {config.name}, {cfg.model.resolution} px, GAN from the first step, no LPIPS, bf16 autocast")
    print(f"{'batch':>5} {'ms/step':>9} {'images/s':>9}")
    for batch in args.vqgan_batches:
        try:
            seconds = vqgan_step_s(cfg, batch, args.warmup, args.steps)
        except RuntimeError as err:
            if not out_of_memory(err):
                raise
            print(f"{batch:>5} out of memory")
            free_memory(device)
            break
        print(f"{batch:>5} {1000 * seconds:>9.1f} {batch / seconds:>9.1f}", flush=True)


# --- extract ---------------------------------------------------------------------------------------


def extract_section(args, device: torch.device) -> None:
    import open_clip

    from clipgen.models.vqgan import VQGAN

    vq_cfg = load_config(VQGANTrainConfig, ROOT / "configs/vqgan/shapes32.yaml" if args.tiny else VQGAN_CONFIG, bench_overrides(gan=False))
    vqgan = VQGAN(vq_cfg.model).to(device).eval()
    clip_size = 32 if args.tiny else 224
    clip = open_clip.create_model("ViT-B-32", pretrained=None, force_image_size=clip_size).to(device).eval()
    batch = args.extract_batch
    images = torch.rand(batch, 3, vq_cfg.model.resolution, vq_cfg.model.resolution, device=device) * 2 - 1
    clip_pixels = torch.rand(batch, 3, clip_size, clip_size, device=device)

    @torch.inference_mode()
    def encode():
        with autocast(device):
            vqgan.encode_to_indices(images)
            clip.encode_image(clip_pixels)

    encode_s = seconds_per_call(encode, device, args.warmup, args.steps)
    train_cfg = gpt_train_config(args.tiny)
    model = ConditionTransformer(train_cfg.model).to(device)
    step_s = seconds_per_call(gpt_step(model, fused_adamw(model, train_cfg, device), batch, device), device, args.warmup, args.steps)
    print(f"\n## extract: VQGAN {vq_cfg.model.resolution} px to codes + CLIP ViT-B-32 image tower at {clip_size} px, "
          f"batch {batch}, bf16 autocast, random weights, no image decoding")
    print(f"encode: {batch / encode_s:.1f} images/s ({1000 * encode_s:.1f} ms a batch)")
    print(f"GPT step ({train_cfg.model.n_layer} × {train_cfg.model.n_embd}) on stored codes and embeddings: "
          f"{1000 * step_s:.1f} ms; with the encoding in every step: {1000 * (step_s + encode_s):.1f} ms; "
          f"extract-then-train speed-up {(step_s + encode_s) / step_s:.2f}×")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: that every section runs, on any device")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, where PEAK_BF16_TFLOPS lacks it")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per figure (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (torch.compile compiles in them)")
    parser.add_argument("--sample-batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--vqgan-batches", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--extract-batch", type=int, default=64)
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (its rows then run eager)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cuda" and not args.tiny:
        raise SystemExit("device_figures: the real shapes are for a GPU (hours on a CPU); pass --tiny to check that it runs")
    if args.tiny:
        args.steps, args.warmup = min(args.steps, 2), min(args.warmup, 1)
        args.sample_batches, args.vqgan_batches, args.extract_batch = [1, 2], [2], 2
    print(f"# device_figures: {device_name(device)}, torch {torch.__version__}, {'tiny shapes' if args.tiny else 'real shapes'}")
    sections = {"train": train_section, "sample": sample_section, "vqgan": vqgan_section, "extract": extract_section}
    for name in args.sections:
        sections[name](args, device)


if __name__ == "__main__":
    main()
