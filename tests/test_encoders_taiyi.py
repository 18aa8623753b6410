"""load_clip("taiyi") gives what transformers' BertForSequenceClassification and CLIPModel give directly."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clipgen.encoders import load_clip
from test_encoders import TEXTS, images  # the shared prompts and images of the other parity tests

TOKENIZER_MAX_LENGTH = 16  # below the 64 positions, so the tokenizer's limit is the one that cuts


def _text_tower(root: Path, num_labels: int) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set("".join(TEXTS)))]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=num_labels)  # fmt: skip
    BertForSequenceClassification(config).eval().save_pretrained(root)
    BertTokenizer(str(root / "vocab.txt"), model_max_length=TOKENIZER_MAX_LENGTH).save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def taiyi_dirs(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    text_dir = _text_tower(tmp_path_factory.mktemp("taiyi_text"), num_labels=16)
    image_dir = tmp_path_factory.mktemp("taiyi_image")
    torch.manual_seed(1)
    config = CLIPConfig(
        text_config=dict(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=2),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(config).eval().save_pretrained(image_dir)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(image_dir)
    return text_dir, image_dir


def test_taiyi_matches_transformers(taiyi_dirs):
    from transformers import BertForSequenceClassification, BertTokenizer, CLIPImageProcessor, CLIPModel

    text_dir, image_dir = taiyi_dirs
    text_model = BertForSequenceClassification.from_pretrained(text_dir).eval()
    tokenizer = BertTokenizer.from_pretrained(text_dir)
    image_model = CLIPModel.from_pretrained(image_dir).eval()
    processor = CLIPImageProcessor.from_pretrained(image_dir)
    with torch.no_grad():
        text = text_model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
        image = image_model.get_image_features(**processor(images=images(), return_tensors="pt"))
        image = image.pooler_output if hasattr(image, "pooler_output") else image
    encoder = load_clip("taiyi", text_dir, image_dir=image_dir, batch_size=2)  # batching/padding must not matter
    assert encoder.dim == 16 and encoder.max_text_tokens == TOKENIZER_MAX_LENGTH
    torch.testing.assert_close(encoder.encode_text(TEXTS), F.normalize(text, dim=-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.encode_image(images()), F.normalize(image, dim=-1), atol=1e-5, rtol=1e-5)


def test_taiyi_long_prompt_is_cut_with_a_warning(taiyi_dirs, caplog):
    text_dir, image_dir = taiyi_dirs
    encoder = load_clip("taiyi", text_dir, image_dir=image_dir)
    with caplog.at_level("WARNING", logger="clipgen.encoders"):
        embedding = encoder.encode_text(["红色" * 100])
    assert embedding.shape == (1, 16) and f"cut to {TOKENIZER_MAX_LENGTH} tokens" in caplog.text


def test_taiyi_clear_errors(taiyi_dirs, tmp_path):
    text_dir, image_dir = taiyi_dirs
    with pytest.raises(ValueError, match="text 1 is empty"):
        load_clip("taiyi", text_dir, image_dir=image_dir).encode_text(["红色", "   "])
    with pytest.raises(ValueError, match="taiyi needs two local directories"):
        load_clip("taiyi", text_dir)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_clip("taiyi", text_dir, image_dir=tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_clip("taiyi", tmp_path / "absent", image_dir=image_dir)
    (tmp_path / "narrow").mkdir()
    narrow = _text_tower(tmp_path / "narrow", num_labels=8)
    with pytest.raises(ValueError, match=r"8-d embeddings \(num_labels\).*16-d \(projection_dim\)"):
        load_clip("taiyi", narrow, image_dir=image_dir)


def test_a_clip_spec_string_carries_the_kind_options(taiyi_dirs):
    from clipgen.encoders import load_clip_spec

    text_dir, image_dir = taiyi_dirs
    direct = load_clip("taiyi", text_dir, image_dir=image_dir).encode_text(TEXTS)
    encoder = load_clip_spec(f"taiyi:{text_dir};image_dir={image_dir};batch_size=2;dtype=float64")
    assert encoder.batch_size == 2 and encoder.dtype == torch.float64  # the options reached the encoder
    torch.testing.assert_close(encoder.encode_text(TEXTS).float(), direct, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="arch"):  # an option this kind does not take
        load_clip_spec(f"taiyi:{text_dir};image_dir={image_dir};arch=ViT-B-32")
    with pytest.raises(ValueError, match="torch dtype"):
        load_clip_spec(f"taiyi:{text_dir};image_dir={image_dir};dtype=floaty")
    for bad in ("taiyi", f"taiyi:{text_dir};image_dir", f":{text_dir}"):
        with pytest.raises(ValueError, match="KIND:PATH|KEY=VALUE"):
            load_clip_spec(bad)
