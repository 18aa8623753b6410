"""Prompts in, images out: `ClipGenPipeline.from_pretrained(run_dir)(prompts)`.

A condition-transformer run directory names everything sampling needs: `model/` (the
transformer), `gap.json` (the bridge applied to text embeddings), `condition.yaml` (the VQGAN
that decodes the tokens and the CLIP whose text tower reads the prompts) and `sampling.yaml` (the
settings it is best sampled with, which every call starts from). A text-token baseline run reads
prompts with its own `caption-vocab.txt` instead; its CLIP, if named, only re-ranks. The layout is
clipgen/run_dir.py's, which the trainer writes to.

Several requests (each: prompts, a seed, settings) can share one sampler call
(`pipe.run_requests`, what `clipgen serve` batches with); every image draws from its own random
stream (clipgen/sampling.py), so it comes out the same alone or in company.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from clipgen.images import to_pil
from clipgen.sampling import SamplingSettings, check_seed, fresh_seed, read_run_sampling, row_uniforms


def prompt_condition(prompts: Sequence[str], clip, bridge, caption_tokenizer=None) -> torch.Tensor:
    """What a condition transformer reads for these prompts: the bridged CLIP text embeddings, or
    the caption token ids of a text-token run. Empty prompts are refused, long ones cut."""
    if caption_tokenizer is not None:
        return caption_tokenizer.encode(prompts)
    return bridge.for_inference(clip.encode_text(prompts))


def check_prompts(prompts: Sequence[str]) -> None:
    """Refuse what no CLIP can read, naming the prompt by its 0-based index: none at all, one that
    is not a string, one with no visible character."""
    if not prompts:
        raise ValueError("no prompts given")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise ValueError(f"prompt {i} is not a string but {type(prompt).__name__} {str(prompt)[:30]!r}")
        if not prompt.strip():
            raise ValueError(f"prompt {i} is empty: a prompt needs at least one visible character")


@dataclass(frozen=True)
class PromptRequest:
    """Prompts to draw `num_images` each for, with one seed and one set of settings. Image k of
    prompt i (or candidate k, with re-ranking) draws from the stream of row i · per_prompt + k."""

    prompts: tuple[str, ...]
    num_images: int
    seed: int
    settings: SamplingSettings

    @property
    def per_prompt(self) -> int:
        """Images drawn per prompt: the candidates when re-ranking, else num_images."""
        return self.settings.candidates or self.num_images

    @property
    def rows(self) -> int:
        return len(self.prompts) * self.per_prompt


class ClipGenPipeline:
    def __init__(self, gpt, vqgan, clip, bridge, device: torch.device, reranker=None, caption_tokenizer=None,
                 sampling: SamplingSettings | None = None, entities=None, condition=None):  # fmt: skip
        self.gpt, self.vqgan, self.clip, self.bridge, self.device = gpt, vqgan, clip, bridge, device
        # the CLIP that ranks candidates: the conditioning CLIP unless another is given (a CLIP the
        # generator was not conditioned on is a less biased judge of its own samples)
        self.reranker = reranker or clip
        self.caption_tokenizer = caption_tokenizer  # set for text-token runs, which read no CLIP
        self.sampling = sampling or SamplingSettings()  # what a call uses for each setting it leaves out
        self.entities = entities  # an imported ARTIST run's EntityLexicon: the prompts' entity knowledge
        self.condition = condition  # the run's ConditionConfig (whether it trained a null condition)

    @classmethod
    def from_pretrained(cls, run_dir: str | Path, device: str = "auto") -> "ClipGenPipeline":
        from clipgen.encoders import load_clip_spec
        from clipgen.encoders.gap import GapBridge
        from clipgen.models.gpt import load_gpt
        from clipgen.models.vqgan import VQGAN, vqgan_model_dir
        from clipgen.run_dir import (CAPTION_VOCAB_NAME, CONDITION_NAME, ENTITY_IDS_NAME, ENTITY_VECTORS_NAME, MODEL_DIR_NAME,
                                     read_condition)  # fmt: skip

        run_dir = Path(run_dir)
        condition = read_condition(run_dir)
        reads_tokens = condition.source == "caption-tokens"
        if not condition.vqgan:
            raise ValueError(f"{run_dir}/{CONDITION_NAME} must name the VQGAN (vqgan: DIR)")
        if not (condition.clip or reads_tokens):
            raise ValueError(f"{run_dir}/{CONDITION_NAME} must name the CLIP that reads the prompts (clip: KIND:PATH)")
        torch_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        gpt = load_gpt(run_dir / MODEL_DIR_NAME).to(torch_device)
        if reads_tokens != (gpt.config.text_vocab_size > 0):
            raise ValueError(f"{run_dir}: {CONDITION_NAME} says source {condition.source}, but {MODEL_DIR_NAME}/ "
                             f"{'reads caption tokens' if gpt.config.text_vocab_size else 'reads embeddings'}")  # fmt: skip
        tokenizer = None
        if reads_tokens:
            from clipgen.encoders.caption_tokens import CaptionTokenizer

            tokenizer = CaptionTokenizer(run_dir / CAPTION_VOCAB_NAME, gpt.config.n_prefix)
            if tokenizer.vocab_size != gpt.config.text_vocab_size:
                raise ValueError(f"{run_dir / CAPTION_VOCAB_NAME} holds {tokenizer.vocab_size} tokens, "
                                 f"the model was trained on {gpt.config.text_vocab_size}")  # fmt: skip
        entities = None
        if gpt.config.entity_dim:
            from clipgen.encoders.entity_lexicon import EntityLexicon

            entities = EntityLexicon.from_files(run_dir / ENTITY_IDS_NAME, run_dir / ENTITY_VECTORS_NAME, gpt.config.n_prefix)
        return cls(
            gpt,
            VQGAN.from_pretrained(vqgan_model_dir(condition.vqgan)).to(torch_device).eval(),
            load_clip_spec(condition.clip, device=torch_device) if condition.clip else None,
            GapBridge.load(run_dir),
            torch_device,
            caption_tokenizer=tokenizer,
            sampling=read_run_sampling(run_dir),
            entities=entities,
            condition=condition,
        )

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """What the transformer reads for these prompts: bridged CLIP text embeddings [B, dim], or a
        text-token run's caption ids [B, n_prefix] (unshifted: the model adds the codebook size)."""
        return prompt_condition(prompts, self.clip, self.bridge, self.caption_tokenizer)

    def encode_knowledge(self, prompts: Sequence[str]) -> torch.Tensor | None:
        """An ARTIST run's entity vectors for these prompts ([B, entities, n_prefix, dim], from all
        of each prompt's tokens, as ARTIST matches them); None for every other run."""
        if self.entities is None:
            return None
        return self.entities.knowledge([self.caption_tokenizer.tokenizer.tokenize(p) for p in prompts])

    def request(
        self,
        prompts: Sequence[str] | str,
        num_images: int = 1,
        seed: int | None = None,
        guidance_scale: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float | None = None,
        candidates: int | None = None,
    ) -> PromptRequest:
        """A checked request; every setting left None is the run's own (`self.sampling`)."""
        if not isinstance(prompts, (str, Sequence)):
            raise ValueError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
        prompts = (prompts,) if isinstance(prompts, str) else tuple(prompts)
        check_prompts(prompts)
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"num_images must be an integer ≥ 1, got {num_images!r}")
        if candidates and candidates < num_images:
            raise ValueError(f"candidates ({candidates}) must be at least num_images ({num_images})")
        settings = self.sampling.replace(guidance_scale=guidance_scale, top_k=top_k, top_p=top_p,
                                         temperature=temperature, candidates=candidates)  # fmt: skip
        if candidates is None and 0 < settings.candidates < num_images:  # the run's own: never fewer than asked for
            settings = settings.replace(candidates=num_images)
        self.check_settings(settings)
        if settings.candidates and self.reranker is None:
            raise ValueError("re-ranking needs a CLIP: this run names none (pass reranker=..., or candidates=0)")
        return PromptRequest(prompts, num_images, fresh_seed() if seed is None else check_seed(seed), settings)

    def check_settings(self, settings: SamplingSettings) -> None:
        """Refuse guidance for a run without a trained null condition (run_dir.check_guidance)."""
        if self.condition is not None:
            from clipgen.run_dir import check_guidance

            check_guidance(self.condition, settings.guidance_scale, "this run")

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str] | str, num_images: int = 1, seed: int | None = None,
                 kv_cache: bool = True, **settings) -> list[list[Image.Image]]:  # fmt: skip
        """One list of `num_images` PIL images per prompt. Settings (guidance_scale, top_k, top_p,
        temperature, candidates) not given are the run's own. With `candidates` = N, N images are
        drawn per prompt and the reranker CLIP keeps the `num_images` that match the prompt best,
        best first."""
        return self.run_requests([self.request(prompts, num_images, seed, **settings)], kv_cache)[0]

    @torch.no_grad()
    def run_requests(self, requests: Sequence[PromptRequest], kv_cache: bool = True) -> list[list[list[Image.Image]]]:
        """Each request's images (one list per prompt), all drawn in one sampler call. Each request's
        prompts are encoded on their own, so what shares the batch cannot change what it reads."""
        conds = [self.encode_prompts(r.prompts).repeat_interleave(r.per_prompt, dim=0) for r in requests]
        knowledge = None
        if self.entities is not None:
            knowledge = torch.cat([self.encode_knowledge(r.prompts).repeat_interleave(r.per_prompt, dim=0) for r in requests])
        drawn = self.draw(conds, [r.seed for r in requests], [r.settings for r in requests], kv_cache, knowledge)
        results = []
        for request, images in zip(requests, drawn, strict=True):
            n = request.per_prompt
            groups = [images[i * n : (i + 1) * n] for i in range(len(request.prompts))]
            if request.settings.candidates:
                groups = self.rerank(request.prompts, groups, request.num_images)
            results.append(groups)
        return results

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
    def generate(self, cond: torch.Tensor, seed: int | None = None, kv_cache: bool = True,
                 knowledge: torch.Tensor | None = None, **settings) -> list[Image.Image]:  # fmt: skip
        """One image per row of `cond`, a condition the transformer reads directly (already through
        the bridge). Prompts go through `__call__`; this also takes image embeddings, to measure
        what the modality gap costs. An ARTIST run also needs its rows' `knowledge`
        (`encode_knowledge(prompts)`), which it was trained with and is never silently left out."""
        if (knowledge is None) != (self.entities is None):
            raise ValueError("this run reads ARTIST's entity knowledge: pass knowledge=pipe.encode_knowledge(prompts)"
                             if knowledge is None else "knowledge= is for ARTIST runs only: this run reads no entities")  # fmt: skip
        seed = fresh_seed() if seed is None else seed
        sampling = self.sampling.replace(**settings)
        self.check_settings(sampling)
        return self.draw([cond], [seed], [sampling], kv_cache, knowledge)[0]

    @torch.no_grad()
    def draw(self, conds: Sequence[torch.Tensor], seeds: Sequence[int], settings: Sequence[SamplingSettings],
             kv_cache: bool = True, knowledge: torch.Tensor | None = None) -> list[list[Image.Image]]:  # fmt: skip
        """Images for several groups of conditions in one sampler call: group g's rows take its
        seed's streams (row r: (seeds[g], r)) and its settings; each group is decoded on its own.
        `knowledge`: an ARTIST run's entity vectors, one row per condition row."""
        sizes = [len(c) for c in conds]
        kwargs = [s.sampler_kwargs() for s in settings]
        per_row = {name: torch.cat([torch.full((n,), k[name]) for n, k in zip(sizes, kwargs, strict=True)]) for name in kwargs[0]}
        uniforms = torch.cat([row_uniforms(seed, n, self.gpt.config.block_size) for n, seed in zip(sizes, seeds, strict=True)])
        knowledge = None if knowledge is None else knowledge.to(self.device)
        tokens = self.gpt.sample(torch.cat(list(conds)).to(self.device), uniforms=uniforms, kv_cache=kv_cache,
                                 knowledge=knowledge, **per_row)  # fmt: skip
        grid = self.vqgan.config.token_grid
        return [to_pil(self.vqgan.decode_indices(group.view(-1, grid, grid))) for group in tokens.split(sizes)]
