"""Any open_clip architecture, with weights from a local file.

`arch` names an open_clip model config (`open_clip.list_models()`), e.g. `ViT-B-32` or the
multilingual `xlm-roberta-base-ViT-B-32`. Towers whose text side is a Hugging Face model read
that model's config and tokenizer by name; offline, pass `hf_dir=` a local copy of it (for
xlm-roberta-base: config.json and the tokenizer files).
"""

from __future__ import annotations

from pathlib import Path

import torch

from clipgen.encoders.base import ClipEncoder, frozen, require_path
from clipgen.encoders.pixels import PixelPreprocess


class OpenClipEncoder(ClipEncoder):
    kind = "open_clip"

    def __init__(self, path: str | Path, *, arch: str, hf_dir: str | None = None, **options):
        super().__init__(**options)
        import open_clip

        if arch not in open_clip.list_models():
            raise ValueError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models()")
        path = require_path(path, self.kind, f"a checkpoint file for {arch}")
        model_kwargs = {}
        if hf_dir is not None:
            hf_dir = str(require_path(hf_dir, self.kind, "a local copy of the Hugging Face text model"))
            model_kwargs["text_cfg"] = {**open_clip.get_model_config(arch)["text_cfg"], "hf_model_name": hf_dir}
        # the checkpoint holds both towers: nothing is fetched for the text tower (pretrained_text)
        # and the file is read without unpickling code (weights_only)
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(path), device=self.device, weights_only=True, pretrained_text=False, **model_kwargs
        )
        self.model = frozen(model.to(self.dtype))
        self.preprocess = preprocess
        self.pixel_preprocess = PixelPreprocess.from_torchvision(preprocess)
        self.tokenizer = open_clip.get_tokenizer(hf_dir or arch)
        self.dim = open_clip.get_model_config(arch)["embed_dim"]
        self.max_text_tokens = self.tokenizer.context_length

    def _image_features(self, images):
        pixels = torch.stack([self.preprocess(image) for image in images]).to(self.device, self.dtype)
        return self._pixel_features(pixels)

    def _pixel_features(self, pixel_values):
        return self.model.encode_image(pixel_values)

    def _text_features(self, texts):
        return self.model.encode_text(self.tokenizer(texts).to(self.device))
