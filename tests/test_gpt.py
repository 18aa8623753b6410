import pytest
import torch

from clipgen.models.gpt import ConditionTransformer, GPTConfig, adamw_param_groups
from clipgen.train.gpt import GPTOptimConfig, make_optimizer


def tiny(dtype=torch.float64, cond_every_token=False, cond_every_layer=False, rope_2d=False) -> ConditionTransformer:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=37, block_size=16, cond_dim=12, n_prefix=3, n_layer=2, n_head=2, n_embd=16,
                    cond_every_token=cond_every_token, cond_every_layer=cond_every_layer, rope_2d=rope_2d)  # fmt: skip
    return ConditionTransformer(cfg).to(dtype).eval()


def test_forward_shapes_and_condition_dropout():
    model = tiny()
    cond, tokens = torch.randn(4, 12, dtype=torch.float64), torch.randint(0, 37, (4, 16))
    assert model(cond, tokens).shape == (4, 16, 37)
    drop = torch.tensor([True, False, True, False])
    prefix = model.prefix(cond, drop)
    assert torch.equal(prefix[0], model.null_prefix) and not torch.equal(prefix[1], model.null_prefix)


def test_condition_on_every_layer_drops_with_the_prefix_and_changes_the_output():
    model = tiny(cond_every_layer=True)
    cond, tokens = torch.randn(2, 12, dtype=torch.float64), torch.randint(0, 37, (2, 16))
    bias = model.layer_bias(cond, torch.tensor([True, False]))
    assert bias.shape == (2, 2, 16) and torch.equal(bias[0].flatten(), model.null_layers)
    before = model(cond, tokens)
    with torch.no_grad():
        model.cond_layers.weight.add_(torch.randn_like(model.cond_layers.weight))
    assert not torch.allclose(model(cond, tokens)[:, -1], before[:, -1])


def test_condition_on_every_token_reaches_each_position_and_drops_with_the_prefix():
    model = tiny(cond_every_token=True)
    cond, tokens = torch.randn(2, 12, dtype=torch.float64), torch.randint(0, 37, (2, 16))
    drop = torch.tensor([True, False])
    bias = model.condition_bias(cond, drop)
    assert torch.equal(bias[0], model.null_token) and torch.allclose(bias[1], model.cond_token(cond[1]))
    # the projection reaches the last position directly
    before = model(cond, tokens)
    with torch.no_grad():
        model.cond_token.weight.add_(torch.randn_like(model.cond_token.weight))  # a constant shift LN would remove
    assert not torch.allclose(model(cond, tokens)[:, -1], before[:, -1])


@pytest.mark.parametrize("every_token,every_layer,rope", [(False, False, False), (True, False, False), (True, True, False), (True, True, True)])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_kv_cache_sampler_draws_the_same_tokens_as_the_naive_one(guidance, every_token, every_layer, rope):
    model = tiny(cond_every_token=every_token, cond_every_layer=every_layer, rope_2d=rope)
    cond = torch.randn(3, 12, dtype=torch.float64)
    settings = dict(temperature=1.0, top_k=20, top_p=0.95, guidance_scale=guidance)
    cached = model.sample(cond, generator=torch.Generator().manual_seed(7), kv_cache=True, **settings)
    naive = model.sample(cond, generator=torch.Generator().manual_seed(7), kv_cache=False, **settings)
    assert cached.shape == (3, 16)
    assert torch.equal(cached, naive)
    again = model.sample(cond, generator=torch.Generator().manual_seed(7), **settings)
    assert torch.equal(cached, again)  # reproducible by seed
    other = model.sample(cond, generator=torch.Generator().manual_seed(8), **settings)
    assert not torch.equal(cached, other)  # and the seed drives the draw


@pytest.mark.parametrize("every_token,every_layer,rope", [(False, False, False), (True, False, False), (False, True, True)])
def test_sampled_tokens_follow_the_model(every_token, every_layer, rope):
    # greedy decoding must reproduce each position's argmax under teacher forcing
    model = tiny(cond_every_token=every_token, cond_every_layer=every_layer, rope_2d=rope)
    cond = torch.randn(2, 12, dtype=torch.float64)
    tokens = model.sample(cond, temperature=0.0)
    assert torch.equal(model(cond, tokens).argmax(-1), tokens)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_a_few_steps_fit_one_sequence(optimizer):
    model = tiny(torch.float32).train()
    cond, tokens = torch.randn(2, 12), torch.randint(0, 37, (2, 16))
    opt = make_optimizer(model, GPTOptimConfig(optimizer=optimizer, lr=1e-2, muon_lr=0.02))
    first = model.loss(cond, tokens).item()
    for _ in range(30):
        loss = model.loss(cond, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 2


def test_param_groups_decay_only_matrices():
    model = tiny()
    decay, no_decay = adamw_param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and any(p is model.null_prefix for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias,rope,mlp_ratio", [(False, True, 4), (True, False, 4), (True, True, 4), (False, True, 2)])
def test_the_cached_decoding_step_gives_the_logits_of_the_general_forward_bit_for_bit(dtype, bias, rope, mlp_ratio):
    # the sampler's one-position step (_DecodeStep) writes the preallocated cache in place; the
    # general forward (_run) writes its own copy; both must agree exactly at every position
    from clipgen.models.gpt import KVCache, _DecodeStep

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=37, block_size=16, cond_dim=12, n_prefix=3, n_layer=2, n_head=2, n_embd=16, bias=bias,
                    cond_every_token=True, cond_every_layer=True, rope_2d=rope, mlp_ratio=mlp_ratio)  # fmt: skip
    model = ConditionTransformer(cfg).to(dtype).eval()
    assert model.blocks[0].mlp[0].out_features == mlp_ratio * cfg.n_embd
    cond = torch.randn(4, 12, dtype=dtype)
    prefix, token_bias, layer_bias = model._sampling_conditions(cond, guided=True)
    general, fast = (KVCache(cfg, 8, "cpu", dtype) for _ in range(2))
    with torch.inference_mode():
        model._run(prefix, 0, general, layer_bias), model._run(prefix, 0, fast, layer_bias)
        step = _DecodeStep(model, fast, token_bias, layer_bias)
        for i, tokens in enumerate(torch.randint(0, 37, (cfg.block_size - 1, 8))):
            pos = cfg.n_prefix + i
            expected = model._run(model.embed_tokens(tokens.view(-1, 1), token_bias), pos, general, layer_bias)[:, -1]
            assert torch.equal(step(tokens, pos), expected)
        filled = cfg.n_prefix + cfg.block_size - 1
        assert torch.equal(fast.k[:, :, :, :filled], general.k[:, :, :, :filled])


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN: the step keeps mm")
@pytest.mark.parametrize("bias", [False, True])
def test_large_products_go_through_onednn_and_give_the_general_logits_to_rounding(bias):
    # from LARGE_PRODUCT weights on, the cached step's products are oneDNN's linear (MKL's few-row
    # product is slow on AMD EPYC): here the MLP and the head, while qkv and proj stay mm; the
    # logits equal the general forward's up to float32 rounding
    from clipgen.models.gpt import LARGE_PRODUCT, KVCache, _DecodeStep, decode_product

    x, small, large = torch.randn(3, 512), torch.randn(1000, 512), torch.randn(LARGE_PRODUCT // 512, 512)
    assert torch.equal(decode_product(small, None)(x), torch.mm(x, small.t()))
    with torch.inference_mode():
        assert torch.equal(decode_product(large, None)(x), torch.ops.mkldnn._linear_pointwise(x, large, None, "none", [], ""))
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=LARGE_PRODUCT // 512, block_size=9, cond_dim=12, n_prefix=2, n_layer=1, n_head=4, n_embd=512,
                    bias=bias, head_bias=bias, cond_every_token=True, rope_2d=True)  # fmt: skip
    model = ConditionTransformer(cfg).eval()
    with torch.no_grad():  # the model starts its biases at zero, which would hide a bias dropped on the way
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.normal_()
    prefix, token_bias, layer_bias = model._sampling_conditions(torch.randn(2, 12), guided=True)
    general, fast = (KVCache(cfg, 4, "cpu", torch.float32) for _ in range(2))
    with torch.inference_mode():
        model._run(prefix, 0, general, layer_bias), model._run(prefix, 0, fast, layer_bias)
        step = _DecodeStep(model, fast, token_bias, layer_bias)
        for i, tokens in enumerate(torch.randint(0, cfg.vocab_size, (cfg.block_size - 1, 4))):
            pos = cfg.n_prefix + i
            expected = model._run(model.embed_tokens(tokens.view(-1, 1), token_bias), pos, general, layer_bias)[:, -1]
            torch.testing.assert_close(step(tokens, pos), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("guidance", [1.0, torch.tensor([1.0, 2.5, 1.5, 4.0])])
def test_kv_cache_sampler_matches_the_naive_one_in_float32_with_per_row_settings(guidance):
    model = tiny(torch.float32, cond_every_token=True, cond_every_layer=True, rope_2d=True)
    cond = torch.randn(4, 12)
    settings = dict(temperature=torch.tensor([1.0, 0.0, 0.7, 1.3]), top_k=torch.tensor([0, 5, 20, 1]),
                    top_p=torch.tensor([1.0, 0.9, 0.8, 1.0]), guidance_scale=guidance)  # fmt: skip
    uniforms = torch.rand(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    cached = model.sample(cond, uniforms=uniforms, **settings)
    assert torch.equal(cached, model.sample(cond, uniforms=uniforms, kv_cache=False, **settings))
    assert not cached.is_inference()  # an ordinary tensor for the caller, though drawn in inference mode
    cached += 0  # so in-place use works


def test_a_head_bias_and_a_short_position_table_sample_alike_with_and_without_the_cache():
    """Imported clip-gen models (formats/clip_gen.py) carry a head bias and a position table that
    stops one row short; the cached decode step must add the bias as the full pass does."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=37, block_size=16, cond_dim=12, n_prefix=1, n_layer=2, n_head=2, n_embd=16, bias=True,
                    head_bias=True, n_positions=16)  # fmt: skip
    model = ConditionTransformer(cfg).double().eval()
    with torch.no_grad():
        model.head.bias.copy_(torch.randn(37, dtype=torch.float64) * 3)  # large enough to decide the argmax
    cond = torch.randn(3, 12, dtype=torch.float64)
    for settings in (dict(temperature=0), dict(temperature=1.0, top_k=10)):
        cached = model.sample(cond, generator=torch.Generator().manual_seed(1), guidance_scale=1, **settings)
        naive = model.sample(cond, generator=torch.Generator().manual_seed(1), guidance_scale=1, kv_cache=False, **settings)
        assert torch.equal(cached, naive), settings
    with pytest.raises(ValueError, match="n_positions"):
        ConditionTransformer(GPTConfig(vocab_size=37, block_size=16, n_prefix=1, n_layer=1, n_head=2, n_embd=16, n_positions=15))


def test_entity_knowledge_changes_only_the_first_image_tokens_logits():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=37, text_vocab_size=20, block_size=16, n_prefix=4, n_layer=2, n_head=2, n_embd=16, entity_dim=5)
    model = ConditionTransformer(cfg).double().eval()
    ids, tokens = torch.randint(0, 20, (2, 4)), torch.randint(0, 37, (2, 16))
    knowledge = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    plain, informed = model(ids, tokens), model(ids, tokens, knowledge=knowledge)
    assert not torch.allclose(plain[:, 0], informed[:, 0])
    assert torch.equal(plain[:, 1:], informed[:, 1:])
    with pytest.raises(ValueError, match="guidance_scale must be 1"):
        model.sample(ids, guidance_scale=2.0, knowledge=knowledge)
