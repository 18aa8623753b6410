"""Taiyi-CLIP (IDEA-CCNL): a Chinese text tower trained against the frozen OpenAI CLIP image tower.

Two local directories, as `save_pretrained` writes them:
- `path`: the text tower, a `BertForSequenceClassification` (Chinese RoBERTa-wwm) whose
  `num_labels` is the CLIP projection width, plus its `BertTokenizer`, e.g. a local copy of
  IDEA-CCNL/Taiyi-CLIP-Roberta-102M-Chinese. Its classifier logits are the text embedding.
- `image_dir`: the image tower, a transformers `CLIPModel` plus its image processor, e.g. a
  local copy of openai/clip-vit-base-patch32 (Taiyi froze it, so only that exact tower matches).
"""

from __future__ import annotations

from pathlib import Path


from clipgen.encoders.base import ClipEncoder, frozen, require_path, warn_prompt_cut
from clipgen.encoders.pixels import PixelPreprocess


class TaiyiClipEncoder(ClipEncoder):
    kind = "taiyi"

    def __init__(self, path: str | Path, *, image_dir: str | Path | None = None, **options):
        super().__init__(**options)
        from transformers import (BertConfig, BertForSequenceClassification, BertTokenizer, CLIPConfig,
                                  CLIPImageProcessor, CLIPModel)  # fmt: skip

        if image_dir is None:
            raise ValueError(
                "taiyi needs two local directories: the text tower as the path and the OpenAI CLIP image tower "
                "as image_dir= (e.g. a local copy of openai/clip-vit-base-patch32)"
            )
        path = require_path(path, self.kind, "a directory with the BertForSequenceClassification text tower")
        image_dir = require_path(image_dir, self.kind, "a directory with the OpenAI CLIPModel image tower + processor")
        # compare the widths from the configs before reading any weights: a mismatched pair would
        # otherwise load fine and give embeddings that cannot be compared
        text_config = BertConfig.from_pretrained(path, local_files_only=True)
        image_config = CLIPConfig.from_pretrained(image_dir, local_files_only=True)
        if text_config.num_labels != image_config.projection_dim:
            raise ValueError(
                f"taiyi text tower at {path} gives {text_config.num_labels}-d embeddings (num_labels) but the CLIP "
                f"image tower at {image_dir} gives {image_config.projection_dim}-d (projection_dim); they must match"
            )
        self.text_model = BertForSequenceClassification.from_pretrained(path, config=text_config, local_files_only=True)
        self.text_model = frozen(self.text_model.to(self.device, self.dtype))
        self.tokenizer = BertTokenizer.from_pretrained(path, local_files_only=True)
        self.image_model = CLIPModel.from_pretrained(image_dir, config=image_config, local_files_only=True)
        self.image_model = frozen(self.image_model.to(self.device, self.dtype))
        # CLIPImageProcessor reads the preprocessor_config.json a saved CLIPProcessor writes too
        self.image_processor = CLIPImageProcessor.from_pretrained(image_dir, local_files_only=True)
        self.pixel_preprocess = PixelPreprocess.from_hf_processor(self.image_processor)
        self.dim = image_config.projection_dim
        # a tokenizer saved without model_max_length reports a huge sentinel: the position table is the real cap
        self.max_text_tokens = min(self.tokenizer.model_max_length, text_config.max_position_embeddings)

    def _image_features(self, images):
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return self._pixel_features(pixels.to(self.device, self.dtype))

    def _pixel_features(self, pixel_values):
        out = self.image_model.get_image_features(pixel_values=pixel_values)
        return out.pooler_output if hasattr(out, "pooler_output") else out

    def _text_features(self, texts):
        inputs = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        )
        lengths = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        for text, ids in zip(texts, lengths):
            if len(ids) > self.max_text_tokens:
                warn_prompt_cut(text, self.max_text_tokens)
        # the attention mask goes in too (IDEA-CCNL's example passes input_ids alone), so padding
        # does not change a prompt's embedding with the batch it lands in
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return self.text_model(**inputs).logits
