"""Chinese CLIP through transformers' `ChineseCLIPModel` and its processor, from a local directory.

The directory is what `save_pretrained` writes for the model and the processor, e.g. a local copy
of OFA-Sys/chinese-clip-vit-base-patch16 (512-d; MUGE image retrieval R@1 52.1 per its card).
The text feature is the text projection of the [CLS] state; texts are cut at 52 tokens, the
length the released models were trained with.
"""

from __future__ import annotations

from pathlib import Path


from clipgen.encoders.base import ClipEncoder, frozen, require_path, warn_prompt_cut
from clipgen.encoders.pixels import PixelPreprocess

TEXT_MAX_LENGTH = 52


class ChineseClipEncoder(ClipEncoder):
    kind = "chinese-clip"

    def __init__(self, path: str | Path, **options):
        super().__init__(**options)
        from transformers import ChineseCLIPModel, ChineseCLIPProcessor

        path = require_path(path, self.kind, "a directory with config.json, the weights and the processor files")
        self.model = frozen(ChineseCLIPModel.from_pretrained(path, local_files_only=True).to(self.device, self.dtype))
        self.processor = ChineseCLIPProcessor.from_pretrained(path, local_files_only=True)
        self.pixel_preprocess = PixelPreprocess.from_hf_processor(self.processor.image_processor)
        self.dim = self.model.config.projection_dim
        positions = self.model.config.text_config.max_position_embeddings
        self.max_text_tokens = min(TEXT_MAX_LENGTH, positions)

    def _image_features(self, images):
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return self._pixel_features(pixels.to(self.device, self.dtype))

    def _pixel_features(self, pixel_values):
        out = self.model.get_image_features(pixel_values=pixel_values)
        return out.pooler_output if hasattr(out, "pooler_output") else out

    def _text_features(self, texts):
        inputs = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        )
        lengths = self.processor.tokenizer(texts, add_special_tokens=True)["input_ids"]
        for text, ids in zip(texts, lengths):
            if len(ids) > self.max_text_tokens:
                warn_prompt_cut(text, self.max_text_tokens)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        out = self.model.get_text_features(**inputs)
        return out.pooler_output if hasattr(out, "pooler_output") else out
