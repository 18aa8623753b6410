"""The caption-trained baselines: caption embeddings in the token shards, the caption-trained and
the text-token condition transformers, trained, saved and sampled like the language-free one."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clipgen.cli import main as clipgen_main
from clipgen.config import ConfigError
from clipgen.data.tokens import iter_token_shard
from clipgen.encoders import load_clip
from clipgen.encoders.caption_tokens import CaptionTokenizer, write_char_vocab
from clipgen.models.gpt import ConditionTransformer, GPTConfig
from clipgen.pipeline import ClipGenPipeline
from clipgen.run_dir import CAPTION_VOCAB_NAME
from gpt_helpers import gpt_args, make_stages

PROMPTS = ["红色圆形", "左上有一个小的蓝色正方形"]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    root = make_stages(tmp_path_factory.mktemp("baseline_stages"), caption_embeddings=True)
    captions = [s["meta"]["caption"] for s in iter_token_shard(root / "tokens/images/shard-000000.tar")]
    write_char_vocab(captions + PROMPTS, root / "vocab.txt")
    return root


def test_extract_stores_each_captions_text_embedding(stages):
    clip = load_clip("toy", stages / "clip")
    samples = list(iter_token_shard(stages / "tokens/images/shard-000000.tar"))
    expected = clip.encode_text([s["meta"]["caption"] for s in samples]).numpy()
    stored = np.stack([s["text"] for s in samples])
    assert stored.dtype == np.float16 and np.allclose(stored, expected, atol=2e-3)
    manifest = json.loads((stages / "tokens/images/manifest.json").read_text())
    assert manifest["caption_embeddings"] and manifest["samples_without_caption_this_pass"] == 0


def test_extract_refuses_to_mix_into_shards_made_otherwise(stages):
    with pytest.raises(ValueError, match="other settings"):
        clipgen_main(["extract", "--vqgan", str(stages / "vq"), "--clip", f"toy:{stages / 'clip'}",
                      "--data", str(stages / "images"), "--out", str(stages / "tokens/images")])  # fmt: skip


def test_caption_trained_run_reads_text_embeddings_and_samples(stages, tmp_path):
    out = tmp_path / "caption"
    assert clipgen_main(gpt_args(stages, out, 2, "condition.source=caption")) == 0
    pipe = ClipGenPipeline.from_pretrained(out)
    images = pipe(PROMPTS, num_images=2, seed=1, guidance_scale=1.5)
    assert [len(row) for row in images] == [2, 2] and images[0][0].size == (32, 32)
    # what the model reads for a prompt is the plain CLIP text embedding: no bridge
    assert torch.allclose(pipe.encode_prompts(PROMPTS), pipe.clip.encode_text(PROMPTS))


def test_a_resumed_run_must_read_what_it_was_trained_on(stages, tmp_path):
    out = tmp_path / "caption"
    assert clipgen_main(gpt_args(stages, out, 2, "condition.source=caption")) == 0
    with pytest.raises(ConfigError, match="trained reading"):
        clipgen_main(["train-gpt", "--resume", str(out), "--set", "run.max_steps=4", "condition.source=image"])


def test_caption_trained_needs_caption_embeddings_and_no_bridge(stages, tmp_path):
    with pytest.raises(ConfigError, match="bridge"):
        clipgen_main(gpt_args(stages, tmp_path / "a", 2, "condition.source=caption", "condition.gap.bridge=lafite"))
    plain = make_stages(tmp_path / "plain")  # token shards without caption embeddings
    with pytest.raises(ConfigError, match="--caption-embeddings"):
        clipgen_main(gpt_args(plain, tmp_path / "b", 2, "condition.source=caption"))


def text_token_args(stages, out, steps, *extra):
    vocab = CaptionTokenizer(stages / "vocab.txt", 12).vocab_size
    return gpt_args(stages, out, steps, "condition.source=caption-tokens", f"condition.caption_vocab={stages / 'vocab.txt'}",
                    "model.n_prefix=12", f"model.text_vocab_size={vocab}", "model.cond_every_token=false", "model.cond_every_layer=false", *extra)  # fmt: skip


def test_text_token_run_saves_its_vocab_and_samples_like_the_others(stages, tmp_path):
    out = tmp_path / "text-token"
    assert clipgen_main(text_token_args(stages, out, 2)) == 0
    assert (out / CAPTION_VOCAB_NAME).read_bytes() == (stages / "vocab.txt").read_bytes()
    pipe = ClipGenPipeline.from_pretrained(out)
    assert pipe.encode_prompts(PROMPTS).shape == (2, 12)
    cached = pipe(PROMPTS, num_images=2, seed=4, guidance_scale=1.5)
    naive = pipe(PROMPTS, num_images=2, seed=4, guidance_scale=1.5, kv_cache=False)
    assert all(a.tobytes() == b.tobytes() for ra, rb in zip(cached, naive) for a, b in zip(ra, rb))
    with pytest.raises(ValueError, match="empty"):
        pipe(["  "])
    script = Path(__file__).parent.parent / "sample.py"
    run = subprocess.run([sys.executable, str(script), "--ckpt", str(out), "--prompt", PROMPTS[1], "--num-images", "2",
                          "--out", str(tmp_path / "s")], capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["0000_0.png", "0000_1.png", "grid.png"]


def test_a_text_token_run_whose_vocab_was_swapped_is_refused(stages, tmp_path):
    out = tmp_path / "text-token"
    assert clipgen_main(text_token_args(stages, out, 2)) == 0
    with open(out / CAPTION_VOCAB_NAME, "a", encoding="utf-8") as vocab:
        vocab.write("多\n")
    with pytest.raises(ValueError, match="trained on"):
        ClipGenPipeline.from_pretrained(out)


def test_partly_captioned_shards_still_train_the_language_free_model(tmp_path, caplog):
    from clipgen.data.token_dataset import TokenData
    from clipgen.data.tokens import write_token_shard

    samples = [{"key": f"{i}", "codes": np.zeros((2, 2), np.int16), "clip": np.ones(4, np.float32),
                "text": np.ones(4, np.float32) if i % 2 else None, "meta": {}} for i in range(4)]  # fmt: skip
    write_token_shard(tmp_path / "shard-000000.tar", samples)
    data = TokenData.load(str(tmp_path))
    assert len(data) == 4 and data.text is None and "no caption embedding" in caplog.text


def test_text_token_vocab_must_match_the_model(stages, tmp_path):
    with pytest.raises(ConfigError, match="text_vocab_size"):
        clipgen_main(text_token_args(stages, tmp_path / "x", 2, "model.text_vocab_size=7"))
    with pytest.raises(ConfigError, match="bridge"):
        clipgen_main(text_token_args(stages, tmp_path / "y", 2, "condition.gap.bridge=lafite"))


def test_text_ids_share_the_table_shifted_past_the_codebook():
    torch.manual_seed(0)
    model = ConditionTransformer(GPTConfig(vocab_size=10, block_size=4, n_prefix=3, text_vocab_size=5,
                                           n_layer=1, n_head=1, n_embd=8))  # fmt: skip
    assert model.tok_emb.num_embeddings == 15 and model.head.out_features == 10 and model.cond_proj is None
    ids = torch.tensor([[0, 4, 2]])
    assert torch.equal(model.prefix(ids)[0], model.tok_emb.weight[ids[0] + 10])
    logits = model(ids, torch.tensor([[1, 2, 3, 4]]))
    assert logits.shape == (1, 4, 10)  # image codes only are predicted


def test_caption_tokenizer_pads_cuts_and_refuses_empty(tmp_path, caplog):
    tokenizer = CaptionTokenizer(write_char_vocab(["红色圆形在左上"], tmp_path / "vocab.txt"), 4)
    ids = tokenizer.encode(["红色", "红色圆形在左上"])
    pad, unk = tokenizer.tokenizer.pad_token_id, tokenizer.tokenizer.unk_token_id
    assert ids[0, 2:].tolist() == [pad, pad] and pad not in ids[1].tolist()
    assert "cut" in caplog.text
    assert tokenizer.encode(["紫"])[0, 0] == unk
    with pytest.raises(ValueError, match="empty"):
        tokenizer.encode([""])
    with pytest.raises(FileNotFoundError, match="vocab"):
        CaptionTokenizer(tmp_path / "missing.txt", 4)
