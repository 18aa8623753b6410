"""Prompts in, images out: `ClipGenPipeline.from_pretrained(run_dir)(prompts)`.

A condition-transformer run directory names everything sampling needs: `model/` (the
transformer), `gap.json` (the bridge applied to text embeddings) and `condition.yaml` (the VQGAN
that decodes the tokens and the CLIP whose text tower reads the prompts). A text-token baseline
run reads prompts with its own `caption-vocab.txt` instead; its CLIP, if named, only re-ranks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from clipgen.config import load_config
from clipgen.images import to_pil


def prompt_condition(prompts: Sequence[str], clip, bridge, caption_tokenizer=None) -> torch.Tensor:
    """What a condition transformer reads for these prompts: the bridged CLIP text embeddings, or
    the caption token ids of a text-token run. Empty prompts are refused, long ones cut."""
    if caption_tokenizer is not None:
        return caption_tokenizer.encode(prompts)
    return bridge.for_inference(clip.encode_text(prompts))


class ClipGenPipeline:
    def __init__(self, gpt, vqgan, clip, bridge, device: torch.device, reranker=None, caption_tokenizer=None):
        self.gpt, self.vqgan, self.clip, self.bridge, self.device = gpt, vqgan, clip, bridge, device
        # the CLIP that ranks candidates: the conditioning CLIP unless another is given (a CLIP the
        # generator was not conditioned on is a less biased judge of its own samples)
        self.reranker = reranker or clip
        self.caption_tokenizer = caption_tokenizer  # set for text-token runs, which read no CLIP

    @classmethod
    def from_pretrained(cls, run_dir: str | Path, device: str = "auto") -> "ClipGenPipeline":
        from clipgen.encoders import load_clip_spec
        from clipgen.encoders.gap import GapBridge
        from clipgen.models.gpt import load_gpt
        from clipgen.models.vqgan import VQGAN, vqgan_model_dir
        from clipgen.train.gpt import CAPTION_VOCAB_NAME, ConditionConfig

        run_dir = Path(run_dir)
        if not (run_dir / "condition.yaml").is_file():
            raise FileNotFoundError(f"{run_dir} is not a condition-transformer run directory (no condition.yaml)")
        condition = load_config(ConditionConfig, run_dir / "condition.yaml")
        reads_tokens = condition.source == "caption-tokens"
        if not condition.vqgan:
            raise ValueError(f"{run_dir}/condition.yaml must name the VQGAN (vqgan: DIR)")
        if not (condition.clip or reads_tokens):
            raise ValueError(f"{run_dir}/condition.yaml must name the CLIP that reads the prompts (clip: KIND:PATH)")
        torch_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        gpt = load_gpt(run_dir / "model").to(torch_device)
        if reads_tokens != (gpt.config.text_vocab_size > 0):
            raise ValueError(f"{run_dir}: condition.yaml says source {condition.source}, but model/ "
                             f"{'reads caption tokens' if gpt.config.text_vocab_size else 'reads embeddings'}")  # fmt: skip
        tokenizer = None
        if reads_tokens:
            from clipgen.encoders.caption_tokens import CaptionTokenizer

            tokenizer = CaptionTokenizer(run_dir / CAPTION_VOCAB_NAME, gpt.config.n_prefix)
            if tokenizer.vocab_size != gpt.config.text_vocab_size:
                raise ValueError(f"{run_dir / CAPTION_VOCAB_NAME} holds {tokenizer.vocab_size} tokens, "
                                 f"the model was trained on {gpt.config.text_vocab_size}")  # fmt: skip
        return cls(
            gpt,
            VQGAN.from_pretrained(vqgan_model_dir(condition.vqgan)).to(torch_device).eval(),
            load_clip_spec(condition.clip, device=torch_device) if condition.clip else None,
            GapBridge.load(run_dir),
            torch_device,
            caption_tokenizer=tokenizer,
        )

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        return prompt_condition(prompts, self.clip, self.bridge, self.caption_tokenizer)

    @torch.no_grad()
    def __call__(
        self,
        prompts: Sequence[str] | str,
        num_images: int = 1,
        seed: int | None = None,
        guidance_scale: float = 2.0,
        top_k: int = 0,
        top_p: float = 1.0,
        temperature: float = 1.0,
        kv_cache: bool = True,
        candidates: int | None = None,
    ) -> list[list[Image.Image]]:
        """One list of `num_images` PIL images per prompt. With `candidates` = N, N images are
        drawn per prompt and the reranker CLIP keeps the `num_images` that match the prompt best,
        best first."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("no prompts given")
        if num_images < 1:
            raise ValueError(f"num_images must be at least 1, got {num_images}")
        if candidates is not None and candidates < num_images:
            raise ValueError(f"candidates ({candidates}) must be at least num_images ({num_images})")
        per_prompt = candidates or num_images
        if candidates and self.reranker is None:
            raise ValueError("re-ranking needs a CLIP: this run names none (pass reranker=...)")
        images = self.generate(
            self.encode_prompts(prompts).repeat_interleave(per_prompt, dim=0), seed=seed,
            guidance_scale=guidance_scale, top_k=top_k, top_p=top_p, temperature=temperature, kv_cache=kv_cache,
        )  # fmt: skip
        groups = [images[i * per_prompt : (i + 1) * per_prompt] for i in range(len(prompts))]
        return self.rerank(prompts, groups, num_images) if candidates else groups

    @torch.no_grad()
    def rerank(self, prompts: Sequence[str], groups: Sequence[Sequence[Image.Image]], keep: int) -> list[list[Image.Image]]:
        """For each prompt, its `keep` images with the highest CLIP image-text cosine, best first;
        the reranker's own preprocessing and tokenizer are used."""
        text = self.reranker.encode_text(list(prompts))
        kept = []
        for prompt_emb, images in zip(text, groups, strict=True):
            scores = self.reranker.encode_image(list(images)) @ prompt_emb.to(self.reranker.device)
            kept.append([images[i] for i in scores.argsort(descending=True)[:keep].tolist()])
        return kept

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, seed: int | None = None, **sampling) -> list[Image.Image]:
        """One image per row of `cond`, a condition the transformer reads directly (already through
        the bridge). Prompts go through `__call__`; this also takes image embeddings, to measure
        what the modality gap costs."""
        generator = torch.Generator(self.device)
        generator.manual_seed(seed) if seed is not None else generator.seed()
        tokens = self.gpt.sample(cond.to(self.device), generator=generator, **sampling)
        grid = self.vqgan.config.token_grid
        return to_pil(self.vqgan.decode_indices(tokens.view(-1, grid, grid)))
