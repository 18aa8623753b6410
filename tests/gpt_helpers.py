"""Shared set-up for the condition-transformer tests: tiny stage models, token shards, arguments."""

from pathlib import Path

from clipgen.cli import main as clipgen_main
from clipgen.data.shapes_shards import make_shapes
from data_helpers import save_tiny_stage_models

CONFIG = Path(__file__).parent.parent / "configs/gpt/shapes32.yaml"


def make_stages(root: Path, caption_embeddings: bool = False) -> Path:
    """Image shards, a VQGAN, a toy CLIP and the token shards extracted with them."""
    make_shapes(root / "images", 32, size=32, seed=0, shard_size=16)
    make_shapes(root / "heldout", 8, size=32, seed=1, shard_size=8)
    save_tiny_stage_models(root)
    extra = ["--caption-embeddings"] if caption_embeddings else []
    for split in ("images", "heldout"):
        assert clipgen_main(["extract", "--vqgan", str(root / "vq"), "--clip", f"toy:{root / 'clip'}",
                             "--data", str(root / split), "--out", str(root / "tokens" / split), *extra]) == 0  # fmt: skip
    (root / "texts.txt").write_text("红色圆形\n左上有一个小的蓝色方块\n\n三角形在中间\n", encoding="utf-8")
    return root


def gpt_settings(root: Path, out: Path, steps: int, *extra: str) -> list[str]:
    """Dotted config overrides for a tiny train-gpt run on make_stages' tokens (for load_config)."""
    return [
        f"run.out_dir={out}", f"run.max_steps={steps}", "run.batch_size=8", "run.log_every=1", "run.eval_every=2",
        "run.ckpt_every=2", "run.image_every=2", f"data.train={root / 'tokens/images'}",
        f"data.val={root / 'tokens/heldout'}", "model.vocab_size=64", "model.cond_dim=16", "model.n_layer=1",
        "model.n_head=2", "model.n_embd=32", "optim.warmup_steps=1", "optim.schedule=constant",
        f"condition.clip=toy:{root / 'clip'}", f"condition.vqgan={root / 'vq'}", "sample.images_per_prompt=2",
        *extra,
    ]  # fmt: skip


def gpt_args(root: Path, out: Path, steps: int, *extra: str) -> list[str]:
    """The same as `clipgen train-gpt` arguments."""
    args = ["train-gpt", "--config", str(CONFIG)]
    for item in gpt_settings(root, out, steps, *extra):
        args += ["--set", item]
    return args
