"""load_clip gives what the real transformers / open_clip classes give when called directly."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipgen.encoders import load_clip

TEXTS = ["一个红色的圆形", "左上角有一个小的蓝色方块", "三角"]


def images():
    return [Image.new("RGB", (40, 36), colour) for colour in ((220, 40, 40), (40, 70, 220), (128, 128, 128))]


@pytest.fixture(scope="module")
def chinese_clip_dir(tmp_path_factory):
    from transformers import (BertTokenizer, ChineseCLIPConfig, ChineseCLIPImageProcessor, ChineseCLIPModel,
                              ChineseCLIPProcessor)

    root = tmp_path_factory.mktemp("chinese_clip")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set("".join(TEXTS)))]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    processor = ChineseCLIPProcessor(
        image_processor=ChineseCLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=BertTokenizer(str(root / "vocab.txt")),
    )
    torch.manual_seed(0)
    config = ChineseCLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64),
        vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )  # fmt: skip
    model = ChineseCLIPModel(config).eval()
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


def _pooled(out):
    return out.pooler_output if hasattr(out, "pooler_output") else out


def test_chinese_clip_matches_transformers(chinese_clip_dir):
    from transformers import ChineseCLIPModel, ChineseCLIPProcessor

    model = ChineseCLIPModel.from_pretrained(chinese_clip_dir).eval()
    processor = ChineseCLIPProcessor.from_pretrained(chinese_clip_dir)
    with torch.no_grad():
        text = _pooled(model.get_text_features(**processor.tokenizer(TEXTS, padding=True, return_tensors="pt")))
        image = _pooled(model.get_image_features(**processor(images=images(), return_tensors="pt")))
    encoder = load_clip("chinese-clip", chinese_clip_dir, batch_size=2)  # batching must not matter
    assert encoder.dim == 16
    torch.testing.assert_close(encoder.encode_text(TEXTS), F.normalize(text, dim=-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.encode_image(images()), F.normalize(image, dim=-1), atol=1e-5, rtol=1e-5)


def test_empty_prompt_and_missing_weights_are_clear_errors(chinese_clip_dir, tmp_path):
    encoder = load_clip("chinese-clip", chinese_clip_dir)
    with pytest.raises(ValueError, match="text 1 is empty"):
        encoder.encode_text(["红色", "   "])
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_clip("chinese-clip", tmp_path / "absent")
    with pytest.raises(ValueError, match="unknown CLIP kind"):
        load_clip("clip-of-the-month", chinese_clip_dir)


def test_long_prompt_is_cut_with_a_warning(chinese_clip_dir, caplog):
    encoder = load_clip("chinese-clip", chinese_clip_dir)
    long_prompt = "红色" * 100
    with caplog.at_level("WARNING", logger="clipgen.encoders"):
        embedding = encoder.encode_text([long_prompt])
    assert embedding.shape == (1, 16) and "cut to 52 tokens" in caplog.text
    assert "(200 characters)" in caplog.text and long_prompt[:40] not in caplog.text  # its start only


@pytest.fixture(scope="module")
def open_clip_file(tmp_path_factory):
    import open_clip

    root = tmp_path_factory.mktemp("open_clip")
    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (root / "clipgen-tiny-test.json").write_text(json.dumps(config))
    open_clip.add_model_config(root / "clipgen-tiny-test.json")
    torch.manual_seed(0)
    model = open_clip.create_model("clipgen-tiny-test")
    torch.save(model.state_dict(), root / "tiny.pt")
    return root / "tiny.pt"


def test_open_clip_matches_open_clip(open_clip_file):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms("clipgen-tiny-test", pretrained=str(open_clip_file))
    model.eval()
    tokenizer = open_clip.get_tokenizer("clipgen-tiny-test")
    with torch.no_grad():
        text = model.encode_text(tokenizer(TEXTS))
        image = model.encode_image(torch.stack([preprocess(im) for im in images()]))
    encoder = load_clip("open_clip", open_clip_file, arch="clipgen-tiny-test")
    assert encoder.dim == 16
    torch.testing.assert_close(encoder.encode_text(TEXTS), F.normalize(text, dim=-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(encoder.encode_image(images()), F.normalize(image, dim=-1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        load_clip("open_clip", open_clip_file, arch="no-such-arch")


def test_toy_clip_trains_through_the_cli_and_loads_as_a_clip(tmp_path):
    from clipgen.cli import main as clipgen_main
    from clipgen.data.shapes_shards import make_shapes

    make_shapes(tmp_path / "train", 64, size=32, seed=0, shard_size=32)
    make_shapes(tmp_path / "heldout", 16, size=32, seed=1, shard_size=16)
    out = tmp_path / "toy"
    settings = [f"run.out_dir={out}", "run.max_steps=3", "run.batch_size=16", "run.eval_every=3",
                f"data.shards={tmp_path / 'train'}", f"eval.shards={tmp_path / 'heldout'}"]  # fmt: skip
    args = ["train-toy-clip", "--config", str(Path(__file__).parent.parent / "configs/clip/toy_shapes32.yaml")]
    for item in settings:
        args += ["--set", item]
    assert clipgen_main(args) == 0
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = [row for row in logged if "eval/pair_cosine" in row][-1]
    assert 0 <= final["eval/retrieval_top1"] <= 1 and -1 <= final["eval/pair_cosine"] <= 1 and final["eval/images"] == 16
    encoder = load_clip("toy", out / "model")
    text, image = encoder.encode_text(["左上有一个大的红色圆形"]), encoder.encode_image(images())
    assert text.shape == (1, 64) and image.shape == (3, 64)
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(3))


def test_toy_clip_pads_captions_only_to_the_longest_and_embeds_them_as_before():
    from clipgen.encoders.toy_clip import PAD, ToyClip, ToyClipConfig
    from clipgen.train.toy_clip import caption_characters

    torch.manual_seed(0)
    model = ToyClip(ToyClipConfig(), caption_characters()).eval()
    texts = ["左上有一个大的红色圆形", "红色", "中间 蓝色的 正方形"]
    ids, cut = model.tokenizer(texts)
    assert ids.shape == (3, 12) and cut == [False, False, False]  # [CLS] + the longest's 11 characters
    padded = torch.nn.functional.pad(ids, (0, model.config.max_text_tokens - ids.shape[1]), value=PAD)
    with torch.no_grad():  # pads are masked: padding to max_text_tokens gives the same embeddings
        torch.testing.assert_close(model.text(ids), model.text(padded), atol=1e-5, rtol=1e-5)
    long_ids, long_cut = model.tokenizer(["红" * 40])
    assert long_ids.shape == (1, model.config.max_text_tokens) and long_cut == [True]
