"""The fixed-shape decoding step (models/static_decode.py), the one a GPU replays as a CUDA graph:
on the CPU it runs eagerly and must give the ordinary step's logits and the sampler's tokens."""

import pytest
import torch

from clipgen.models.gpt import ConditionTransformer, GPTConfig, KVCache, _DecodeStep
from clipgen.models.static_decode import FixedShapeCache, graphed


def tiny(dtype, **options) -> ConditionTransformer:
    torch.manual_seed(0)
    cfg = GPTConfig(**{"vocab_size": 37, "block_size": 16, "cond_dim": 12, "n_prefix": 3, "n_layer": 2, "n_head": 2, "n_embd": 16, **options})
    return ConditionTransformer(cfg).to(dtype).eval()


@pytest.mark.parametrize("bias,rope", [(False, True), (True, False)])
def test_the_static_step_gives_the_ordinary_steps_logits_and_cache(bias, rope):
    model = tiny(torch.float32, bias=bias, cond_every_token=True, cond_every_layer=True, rope_2d=rope)
    cfg = model.config
    prefix, token_bias, layer_bias = model._sampling_conditions(torch.randn(4, 12), guided=True)
    ordinary, static = KVCache(cfg, 8, "cpu", torch.float32), KVCache(cfg, 8, "cpu", torch.float32, zeroed=True)
    assert not static.k.any() and not static.v.any()  # masked slots weigh 0, and 0 × garbage may be NaN
    with torch.inference_mode():
        model._run(prefix, 0, ordinary, layer_bias), model._run(prefix, 0, static, layer_bias)
        step = _DecodeStep(model, ordinary, token_bias, layer_bias)
        fixed = _DecodeStep(model, static, token_bias, layer_bias, FixedShapeCache(static.k.shape[3], "cpu"))
        assert graphed(fixed) is fixed  # no graph on a CPU
        for i, tokens in enumerate(torch.randint(0, 37, (cfg.block_size - 1, 8))):
            pos = cfg.n_prefix + i
            torch.testing.assert_close(fixed(tokens, pos), step(tokens, pos), rtol=1e-5, atol=1e-5)
    filled = cfg.n_prefix + cfg.block_size - 1
    torch.testing.assert_close(static.k[:, :, :, :filled], ordinary.k[:, :, :, :filled])
    assert not static.k[:, :, :, filled:].any()  # the last slot: the last token is never fed back


@pytest.mark.parametrize("guidance", [1.0, torch.tensor([1.0, 2.5, 1.5])])
def test_sampling_with_the_static_cache_draws_the_ordinary_samplers_tokens(guidance):
    model = tiny(torch.float64, cond_every_token=True, cond_every_layer=True, rope_2d=True)
    cond = torch.randn(3, 12, dtype=torch.float64)
    settings = dict(temperature=torch.tensor([1.0, 0.0, 0.8]), top_k=torch.tensor([0, 5, 20]), guidance_scale=guidance)
    uniforms = torch.rand(3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ordinary = model.sample(cond, uniforms=uniforms, **settings)
    assert torch.equal(model.sample(cond, uniforms=uniforms, static_cache=True, **settings), ordinary)


def test_a_position_table_one_short_samples_with_the_static_cache_too():
    # clip-gen's released models stop their position table one short (formats/clip_gen.py)
    model = tiny(torch.float64, n_prefix=1, bias=True, head_bias=True, n_positions=16)
    cond = torch.randn(2, 12, dtype=torch.float64)
    assert torch.equal(model.sample(cond, temperature=0, guidance_scale=1, static_cache=True),
                       model.sample(cond, temperature=0, guidance_scale=1))  # fmt: skip
