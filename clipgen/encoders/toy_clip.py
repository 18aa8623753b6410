"""The toy CLIP: a stand-in for a pretrained Chinese CLIP on shapes-zh, and labelled as such.

A small convolutional image tower and a character-level Chinese text tower, trained from scratch
with CLIP's own objective: one-to-one InfoNCE over the batch in both directions, with a learned
temperature. Trained that way it shows a real modality gap (matching image and text embeddings
are far from identical), which is the thing the gap bridges of the method exist for. It knows
nothing beyond shapes-zh; for real Chinese prompts use `chinese-clip`.

A trained toy CLIP is a directory: config.json, model.safetensors, vocab.json (its characters).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipgen.config import from_dict, to_dict
from clipgen.encoders.base import ClipEncoder, frozen, require_path, warn_prompt_cut
from clipgen.encoders.pixels import PixelPreprocess

FORMAT_TAG = "clipgen-toy-clip"
PAD, UNK, CLS = 0, 1, 2
SPECIAL = ["[PAD]", "[UNK]", "[CLS]"]


@dataclass
class ToyClipConfig:
    image_size: int = 32
    dim: int = 64  # the shared embedding width
    image_channels: int = 64
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    max_text_tokens: int = 32  # [CLS] + characters


class CharTokenizer:
    """One id per character; unknown characters map to [UNK]. Ids start with [CLS]."""

    def __init__(self, chars: list[str], max_tokens: int):
        self.vocab = SPECIAL + sorted(set(chars) - set(SPECIAL))
        self.index = {c: i for i, c in enumerate(self.vocab)}
        self.max_tokens = max_tokens

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """Ids [B, T] padded to the longest text (at most max_tokens) and, per text, whether it was
        cut. Padding only to the longest: shapes-zh captions hold at most 14 tokens, and the text
        tower's work grows with T (pads are masked, so [CLS] does not see them either way)."""
        rows = [[CLS] + [self.index.get(c, UNK) for c in text if not c.isspace()] for text in texts]
        cut = [len(tokens) > self.max_tokens for tokens in rows]
        ids = torch.full((len(texts), min(self.max_tokens, max(map(len, rows), default=1))), PAD, dtype=torch.long)
        for row, tokens in enumerate(rows):
            tokens = tokens[: self.max_tokens]
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return ids, cut


class ImageTower(nn.Module):
    def __init__(self, cfg: ToyClipConfig):
        super().__init__()
        c = cfg.image_channels
        layers, in_ch = [], 3
        for out_ch in (c // 2, c, c, 2 * c):  # 32 -> 16 -> 8 -> 4 -> 2 at 32 px
            # no normalisation layers: with GroupNorm the tower lost the absolute colour of the
            # flat shapes (measured: colour zero-shot accuracy 12 % with it, 100 % without)
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1), nn.GELU()]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        # position matters in shapes-zh, so the map is flattened, not pooled away
        side = math.ceil(cfg.image_size / 16)
        self.proj = nn.Linear(in_ch * side * side, cfg.dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(images).flatten(1))


class TextTower(nn.Module):
    def __init__(self, cfg: ToyClipConfig, vocab_size: int):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, cfg.text_width, padding_idx=PAD)
        self.pos = nn.Parameter(torch.zeros(cfg.max_text_tokens, cfg.text_width))
        layer = nn.TransformerEncoderLayer(
            cfg.text_width, cfg.text_heads, 4 * cfg.text_width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(cfg.text_width)
        self.proj = nn.Linear(cfg.text_width, cfg.dim)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.tok(ids) + self.pos[: ids.shape[1]], src_key_padding_mask=ids == PAD)
        return self.proj(self.ln(h[:, 0]))  # the [CLS] position


class ToyClip(nn.Module):
    def __init__(self, cfg: ToyClipConfig, chars: list[str]):
        super().__init__()
        self.config = cfg
        self.tokenizer = CharTokenizer(chars, cfg.max_text_tokens)
        self.image = ImageTower(cfg)
        self.text = TextTower(cfg, len(self.tokenizer.vocab))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Symmetric InfoNCE: image i matches text i and no other text of the batch."""
        img = F.normalize(self.image(images), dim=-1)
        txt = F.normalize(self.text(ids), dim=-1)
        scale = self.logit_scale.clamp(max=math.log(100)).exp()  # CLIP caps the scale at 100
        logits = scale * img @ txt.t()
        target = torch.arange(len(img), device=img.device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        accuracy = (logits.argmax(dim=1) == target).float().mean().item()
        return loss, {"accuracy": accuracy, "temperature": 1.0 / scale.item()}

    def save_pretrained(self, directory: str | Path) -> None:
        from clipgen.engine.atomic import atomic_write
        from clipgen.models.weights import save_model_dir

        save_model_dir(self, directory, FORMAT_TAG, to_dict(self.config))
        with atomic_write(Path(directory) / "vocab.json") as tmp:
            tmp.write_text(json.dumps(self.tokenizer.vocab, ensure_ascii=False), "utf-8")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ToyClip":
        from clipgen.models.weights import load_state_strict, read_model_dir

        directory = require_path(directory, "toy", "the model/ directory that `clipgen train-toy-clip` writes")
        meta, state = read_model_dir(directory, FORMAT_TAG, "toy CLIP")
        vocab = json.loads((directory / "vocab.json").read_text("utf-8"))
        model = cls(from_dict(ToyClipConfig, meta), vocab)
        load_state_strict(model, state, source=str(directory))
        return model.eval()

def image_to_tensor(image, size: int) -> torch.Tensor:
    """PIL image -> [3, size, size] in [-1, 1], resized with a box filter (shapes are flat)."""
    from PIL import Image

    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BOX)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


class ToyClipEncoder(ClipEncoder):
    kind = "toy"

    def __init__(self, path: str | Path, **options):
        super().__init__(**options)
        self.model = frozen(ToyClip.from_pretrained(path).to(self.device, self.dtype))
        self.dim = self.model.config.dim
        self.max_text_tokens = self.model.config.max_text_tokens
        size = self.model.config.image_size
        # image_to_tensor's steps: a box-filter squash to the tower's size, then x / 127.5 - 1
        self.pixel_preprocess = PixelPreprocess(resize=(size, size), interpolation="area", antialias=False,
                                                crop=None, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # fmt: skip

    def _image_features(self, images):
        size = self.model.config.image_size
        return self._pixel_features(torch.stack([image_to_tensor(image, size) for image in images]).to(self.device, self.dtype))

    def _pixel_features(self, pixel_values):
        return self.model.image(pixel_values)

    def _text_features(self, texts):
        ids, cut = self.model.tokenizer(texts)
        for text, was_cut in zip(texts, cut):
            if was_cut:
                warn_prompt_cut(text, self.max_text_tokens)
        return self.model.text(ids.to(self.device))
