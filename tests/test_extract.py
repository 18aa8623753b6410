"""clipgen extract: one pass writes token shards that agree with the models; a rerun resumes."""

import json

import numpy as np
import pytest

from clipgen.cli import main as clipgen_main
from clipgen.data.shapes_shards import make_shapes
from clipgen.data.loader import ImageDataConfig, make_image_loader
from clipgen.data.tokens import iter_token_shard
from clipgen.encoders import load_clip
from clipgen.images import to_pil
from clipgen.models.vqgan import VQGAN
from data_helpers import save_tiny_stage_models


def test_extract_writes_codes_and_embeddings_and_resumes(tmp_path, capsys):
    make_shapes(tmp_path / "images", 24, size=32, seed=0, shard_size=8)
    save_tiny_stage_models(tmp_path)
    args = ["extract", "--vqgan", str(tmp_path / "vq"), "--clip", f"toy:{tmp_path / 'clip'}",
            "--data", str(tmp_path / "images"), "--out", str(tmp_path / "tokens"), "--batch-size", "5"]  # fmt: skip
    assert clipgen_main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images_this_pass"] == 24 and summary["token_grid"] == 8 and summary["clip"]["dim"] == 16

    samples = [s for i in range(3) for s in iter_token_shard(tmp_path / "tokens" / f"shard-{i:06d}.tar")]
    assert len(samples) == 24 and samples[0]["codes"].shape == (8, 8) and samples[0]["clip"].shape == (16,)
    assert "labels" in samples[0]["meta"]
    # the stored values are what the models give for the same crops
    vqgan, clip = VQGAN.from_pretrained(tmp_path / "vq" / "model").eval(), load_clip("toy", tmp_path / "clip")
    batch = next(iter(make_image_loader(ImageDataConfig(shards=str(tmp_path / "images")), batch_size=24, seed=0, train=False)))
    by_key = {s["key"]: s for s in samples}
    codes = vqgan.encode_to_indices(batch["image"]).numpy()
    embeddings = clip.encode_image(to_pil(batch["image"])).numpy()
    for i, key in enumerate(batch["key"]):
        assert np.array_equal(by_key[key]["codes"], codes[i])
        assert np.allclose(by_key[key]["clip"], embeddings[i], atol=2e-3)

    assert clipgen_main(args) == 0  # a rerun finds every shard done and redoes nothing
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["images_this_pass"] == 0 and again["shards_already_done"] == 3

    # the settings are claimed before the first shard: shards of unknown settings are not mixed in
    (tmp_path / "tokens" / "extract-settings.json").unlink()
    with pytest.raises(ValueError, match="unknown settings"):
        clipgen_main(args)


def test_extract_under_torchrun_splits_the_shards(tmp_path):
    from dist_helpers import torchrun

    make_shapes(tmp_path / "images", 24, size=32, seed=0, shard_size=8)
    save_tiny_stage_models(tmp_path, ch_mult=(1, 2))  # a 16×16 grid this time
    # the model directory itself this time, not its run directory
    torchrun("-m", "clipgen", "extract", "--vqgan", str(tmp_path / "vq" / "model"), "--clip", f"toy:{tmp_path / 'clip'}",
             "--data", str(tmp_path / "images"), "--out", str(tmp_path / "tokens"))  # fmt: skip
    manifest = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    assert manifest["images_this_pass"] == 24 and len(manifest["shards"]) == 3
    assert sum(1 for i in range(3) for _ in iter_token_shard(tmp_path / "tokens" / f"shard-{i:06d}.tar")) == 24
