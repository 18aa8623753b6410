"""CLIP-GEN's embedding-reconstruction loss: predicted tokens -> frozen VQGAN -> frozen CLIP."""

import json

import pytest
import torch

from clipgen.cli import main as clipgen_main
from clipgen.config import ConfigError, load_config
from clipgen.encoders import load_clip
from clipgen.engine.checkpoint import latest_checkpoint, load_checkpoint
from clipgen.engine.dist import DistInfo
from clipgen.models.quantize import QuantizerConfig
from clipgen.models.vqgan import VQGAN, VQGANConfig
from clipgen.train.clip_loss import ClipReconstructionLoss, differentiable_one_hot
from clipgen.train.gpt import GPTTask, GPTTrainConfig
from gpt_helpers import CONFIG, gpt_args, gpt_settings, make_stages


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    return make_stages(tmp_path_factory.mktemp("clip_loss_stages"))


def task_for(stages, out, *extra) -> GPTTask:
    return GPTTask(load_config(GPTTrainConfig, CONFIG, gpt_settings(stages, out, 2, *extra)), DistInfo())


@pytest.mark.parametrize("estimator", ["straight_through", "gumbel"])
def test_one_hot_is_exact_forward_with_the_softmax_gradient_backward(estimator):
    logits = torch.randn(4, 6, 10, generator=torch.Generator().manual_seed(0), requires_grad=True)
    weights = torch.randn(4, 6, 10, generator=torch.Generator().manual_seed(1))
    one_hot = differentiable_one_hot(logits, estimator, 0.5, torch.Generator().manual_seed(2))
    assert torch.equal(one_hot.sum(-1), torch.ones(4, 6)) and set(one_hot.detach().unique().tolist()) == {0.0, 1.0}
    (one_hot * weights).sum().backward()
    # the gradient of the relaxed softmax at the same temperature (and, for gumbel, the same noise)
    reference = logits.detach().clone().requires_grad_(True)
    scores = reference / 0.5
    if estimator == "gumbel":
        uniform = torch.rand(scores.shape, generator=torch.Generator().manual_seed(2)).clamp_(1e-10, 1.0)
        scores = scores - torch.log(-torch.log(uniform))
    else:
        assert torch.equal(one_hot.argmax(-1), logits.argmax(-1))
    (scores.softmax(-1) * weights).sum().backward()
    torch.testing.assert_close(logits.grad, reference.grad)


def test_gumbel_draws_follow_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(20000, 3)
    picks = differentiable_one_hot(logits, "gumbel", 1.0, torch.Generator().manual_seed(0)).argmax(-1)
    frequencies = torch.bincount(picks, minlength=3).float() / len(picks)
    torch.testing.assert_close(frequencies, logits[0].softmax(-1), atol=0.015, rtol=0)


@pytest.mark.parametrize("l2_norm", [False, True])
def test_decode_of_one_hot_tokens_is_the_vqgan_decode_of_those_indices(stages, l2_norm):
    torch.manual_seed(0)
    config = VQGANConfig(resolution=32, ch=32, ch_mult=[1, 1, 2], num_res_blocks=1, attn_resolutions=[],
                         z_channels=8, embed_dim=4, n_embed=64, quantizer=QuantizerConfig(l2_norm=l2_norm))  # fmt: skip
    vqgan = VQGAN(config)
    with torch.no_grad():  # codes of several lengths, so that normalising them or not shows
        vqgan.quantize.embedding.weight.mul_(torch.rand(64, 1) * 50)
    loss = ClipReconstructionLoss(vqgan, load_clip("toy", stages / "clip"))
    indices = torch.randint(0, 64, (3, 8, 8), generator=torch.Generator().manual_seed(0))
    one_hot = torch.nn.functional.one_hot(indices.flatten(1), 64).float()
    torch.testing.assert_close(loss.decode(one_hot), vqgan.decode_indices(indices).clamp(-1, 1), atol=1e-5, rtol=0)


def test_loss_is_zero_for_the_target_image_and_trains_only_the_logits(stages):
    vqgan, clip = VQGAN.from_pretrained(stages / "vq" / "model"), load_clip("toy", stages / "clip")
    loss = ClipReconstructionLoss(vqgan, clip)
    indices = torch.randint(0, 64, (2, 64), generator=torch.Generator().manual_seed(0))
    logits = (torch.nn.functional.one_hot(indices, 64).float() * 5).requires_grad_(True)
    with torch.no_grad():
        own = clip.encode_image_tensor(vqgan.decode_indices(indices.view(2, 8, 8)).clamp(-1, 1))
    assert loss(logits, own).item() == pytest.approx(0.0, abs=1e-5)
    elsewhere = torch.nn.functional.normalize(torch.randn(2, clip.dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    other = loss(logits, elsewhere)
    assert other.item() > 0.1
    other.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    frozen = list(vqgan.parameters()) + list(clip.model.parameters())
    assert all(p.grad is None and not p.requires_grad for p in frozen) and not vqgan.training


def test_clip_weight_changes_the_step_and_only_the_gpt_learns(stages, tmp_path):
    plain = task_for(stages, tmp_path / "plain", "condition.cond_dropout=0.5")
    with_clip = task_for(stages, tmp_path / "clip", "condition.cond_dropout=0.5", "loss.clip_weight=5")
    assert plain.clip_loss is None and with_clip.clip_loss is not None
    batch = next(plain.train_batches(0))
    logged_plain = plain.train_step([batch], 0)
    logged = with_clip.train_step([batch], 0)
    assert "clip_loss" not in logged_plain and 0 < logged["clip_loss"] <= 2
    assert logged["loss"] == pytest.approx(logged_plain["loss"], rel=1e-6)  # the logged token loss is the same term
    changed = [k for k, v in plain.model.state_dict().items() if not torch.equal(v, with_clip.model.state_dict()[k])]
    assert changed  # the CLIP term moved the weights
    frozen = list(with_clip.clip_loss.vqgan.parameters()) + list(with_clip.clip.model.parameters())
    assert all(p.grad is None and not p.requires_grad for p in frozen)
    state = with_clip.state_dict()
    assert set(state) == {"model", "opt", "reads"} and set(state["model"]) == set(plain.model.state_dict())


def test_clip_term_skips_rows_whose_condition_was_dropped(stages, tmp_path, monkeypatch):
    task = task_for(stages, tmp_path / "run", "loss.clip_weight=1")
    seen = []
    real = task.clip_loss.__call__
    monkeypatch.setattr(type(task.clip_loss), "__call__", lambda self, logits, *a: seen.append(len(logits)) or real(logits, *a))
    batch = next(task.train_batches(0))
    logits = torch.zeros(8, 64, 64, requires_grad=True)
    drop = torch.tensor([True, False, True, False, False, False, False, False])
    assert task._clip_term(logits, batch, drop, 0, 0) is not None and seen == [6]
    assert task._clip_term(logits, batch, torch.ones(8, dtype=torch.bool), 0, 0) is None and seen == [6]


def test_a_run_with_the_clip_loss_logs_it_saves_no_frozen_weights_and_runs_in_bf16(stages, tmp_path, monkeypatch):
    from clipgen.train.clip_loss import ClipReconstructionLoss

    autocast = []  # what the CLIP term ran under, at each call
    real = ClipReconstructionLoss.__call__
    monkeypatch.setattr(ClipReconstructionLoss, "__call__", lambda self, *args: autocast.append(
        (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))) or real(self, *args))
    out = tmp_path / "run"
    assert clipgen_main(gpt_args(stages, out, 2, "loss.clip_weight=0.5", "loss.clip_estimator=gumbel",
                                 "loss.clip_temperature=0.7", "run.precision=bf16")) == 0  # fmt: skip
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    clip_losses = [row["train/clip_loss"] for row in logged if "train/clip_loss" in row]
    assert len(clip_losses) == 2 and all(0 < v <= 2 for v in clip_losses)
    task_state = load_checkpoint(latest_checkpoint(out / "checkpoints"))["task"]
    assert not any(k.startswith(("decoder.", "quantize.", "image.", "text.")) for k in task_state["model"])
    assert set(task_state) == {"model", "opt", "reads"}
    assert autocast and set(autocast) == {(True, torch.bfloat16)}


def test_clip_loss_config_errors_are_clear(stages, tmp_path):
    with pytest.raises(ConfigError, match="condition.vqgan and embeds them with condition.clip"):
        task_for(stages, tmp_path / "a", "loss.clip_weight=1", "condition.vqgan=")
    with pytest.raises(ConfigError, match="condition.vqgan and embeds them with condition.clip"):
        task_for(stages, tmp_path / "b", "loss.clip_weight=1", "condition.clip=")
    with pytest.raises(ConfigError, match="caption-tokens"):
        task_for(stages, tmp_path / "c", "loss.clip_weight=1", "condition.source=caption-tokens",
                 "model.text_vocab_size=100", "model.cond_every_token=false", "model.cond_every_layer=false")  # fmt: skip
    with pytest.raises(ConfigError, match="loss.clip_weight must be ≥ 0"):
        task_for(stages, tmp_path / "d", "loss.clip_weight=-1")
    with pytest.raises(ConfigError, match="clip_estimator"):
        task_for(stages, tmp_path / "e", "loss.clip_estimator=reinforce")
