"""Every config under configs/gpt and configs/vqgan loads with its typed loader, builds, and has
the parameter count its top comment states (a line `# parameters: 351,124,480`). The models are
built on the meta device: shapes only, no memory, no initialisation cost, so even the 777M
transformer takes well under a second."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from clipgen.config import load_config
from clipgen.models.gpt import ConditionTransformer
from clipgen.models.vqgan import VQGAN
from clipgen.train.gpt import GPTTrainConfig
from clipgen.train.vqgan import VQGANTrainConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
STAGES = {"gpt": (GPTTrainConfig, ConditionTransformer), "vqgan": (VQGANTrainConfig, VQGAN)}
STATED = re.compile(r"^#\s*parameters:\s*([\d,]+)", re.MULTILINE)
# the parameters that exist only for model.cond_every_token / cond_every_layer
CONDITION_EVERYWHERE = ("cond_token.", "null_token", "cond_layers.", "null_layers")


def config_files() -> list[Path]:
    return sorted(path for stage in STAGES for path in (CONFIGS / stage).glob("*.yaml"))


def built(path: Path) -> torch.nn.Module:
    config_class, model_class = STAGES[path.parent.name]
    cfg = load_config(config_class, path)
    with torch.device("meta"):
        return model_class(cfg.model)


def count(model: torch.nn.Module, skip: tuple[str, ...] = ()) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(skip))


def test_every_stage_has_configs():
    names = {path.relative_to(CONFIGS).as_posix() for path in config_files()}
    assert {"gpt/shapes32.yaml", "gpt/medium_f16_16384.yaml", "vqgan/f16_16384.yaml", "vqgan/f8_16384_128.yaml"} <= names


@pytest.mark.parametrize("path", config_files(), ids=lambda path: path.relative_to(CONFIGS).as_posix())
def test_config_states_its_parameter_count(path):
    actual = count(built(path))
    stated = STATED.findall(path.read_text(encoding="utf-8"))
    assert len(stated) == 1, f"{path.name}: add one line '# parameters: {actual:,}' to its top comment"
    expected = int(stated[0].replace(",", ""))
    assert abs(actual - expected) <= 0.005 * expected, f"{path.name} states {expected:,} parameters, builds {actual:,}"


def test_paper_scale_is_clip_gen_gpt2_medium():
    """24 × 1024 with 16384 codes: clip-gen's ~337M (12·L·d² ≈ 302M + token embedding and head
    2·16384·1024 ≈ 33.5M). The per-layer and per-token condition projections this config adds
    (12.6M + 0.5M) are counted apart, since clip-gen has no such thing."""
    model = built(CONFIGS / "gpt" / "medium_f16_16384.yaml")
    assert (model.config.n_layer, model.config.n_embd, model.config.n_head) == (24, 1024, 16)
    assert 330e6 <= count(model, skip=CONDITION_EVERYWHERE) <= 345e6
    assert count(model) - count(model, skip=CONDITION_EVERYWHERE) < 0.05 * count(model)


def test_the_128px_generator_reads_the_128px_tokenizer():
    gpt = load_config(GPTTrainConfig, CONFIGS / "gpt" / "oneday_f8_16384_128.yaml").model
    vqgan = load_config(VQGANTrainConfig, CONFIGS / "vqgan" / "f8_16384_128.yaml")
    assert vqgan.data.image_size == vqgan.model.resolution == 128
    assert gpt.block_size == vqgan.model.token_grid**2 == 256 and gpt.vocab_size == vqgan.model.n_embed
