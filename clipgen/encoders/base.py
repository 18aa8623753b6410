"""One interface for every CLIP: L2-normalised image and text embeddings from local weights."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from clipgen.encoders.pixels import PixelPreprocess

log = logging.getLogger("clipgen.encoders")
_SHOWN_CHARACTERS = 30


def warn_prompt_cut(text: str, max_tokens: int) -> None:
    """Say a prompt was cut, showing its start only: a page of pasted text must not flood the log."""
    shown = text if len(text) <= _SHOWN_CHARACTERS else f"{text[:_SHOWN_CHARACTERS]}… ({len(text)} characters)"
    log.warning("prompt cut to %d tokens: %r", max_tokens, shown)


class ClipEncoder(ABC):
    """A frozen CLIP pair of towers with its own preprocessing and tokenizer.

    `encode_image` and `encode_text` take Python lists, batch them (`batch_size` at a time), run
    on `device` in `dtype`, and return float32 L2-normalised embeddings [B, dim] on `device`.
    `encode_image_tensor` is the differentiable image path for pixel tensors (a training loss on
    generated images); the towers' weights never take gradients (`frozen`)."""

    kind: str = ""
    dim: int
    max_text_tokens: int
    pixel_preprocess: PixelPreprocess  # this CLIP's resize and normalisation, as tensor operations

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, batch_size: int = 64):
        self.device, self.dtype, self.batch_size = torch.device(device), dtype, batch_size

    @torch.no_grad()
    def encode_image(self, images: Sequence[Image.Image]) -> torch.Tensor:
        from clipgen.data.decode import to_rgb  # 16-bit scaled, not clipped; upright; alpha on white

        images = [to_rgb(image) for image in images]
        return self._batched(images, self._image_features)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {i} is empty: a prompt needs at least one visible character")
        return self._batched(texts, self._text_features)

    def encode_image_tensor(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image embeddings of pixels [B, 3, H, W] in [-1, 1] (a VQGAN decoder's range), through
        this CLIP's own resize, crop and normalisation (encoders/pixels.py), with gradients to
        `pixels`. One forward for the whole batch (the caller sized it); float32, L2-normalised.
        Close to `encode_image` of the same picture, not equal: PIL rounds to uint8 around its resize."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be [B, 3, H, W], got {tuple(pixels.shape)}")
        normalised = self.pixel_preprocess(pixels.to(self.device, self.dtype))
        return F.normalize(self._pixel_features(normalised).float(), dim=-1)

    def _batched(self, items: list, features) -> torch.Tensor:
        if not items:
            return torch.empty(0, self.dim, device=self.device)
        chunks = [features(items[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
        return F.normalize(torch.cat(chunks).float(), dim=-1)

    @abstractmethod
    def _image_features(self, images: list[Image.Image]) -> torch.Tensor: ...

    @abstractmethod
    def _pixel_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The image tower on already preprocessed pixels (the input `_image_features` builds)."""

    @abstractmethod
    def _text_features(self, texts: list[str]) -> torch.Tensor: ...


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    """A tower as every encoder holds it: eval mode, and no gradients for its weights, so a loss
    through `encode_image_tensor` trains what made the pixels and never the CLIP."""
    return module.eval().requires_grad_(False)


def require_path(path: str | Path, kind: str, what: str) -> Path:
    """The local weights path, or an error that says what to put there (nothing is downloaded)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} CLIP weights not found at {path}: {what}. clipgen never downloads weights.")
    return path
