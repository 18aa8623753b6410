"""Mixed precision: which runs autocast to bf16, and attention kept in float32 on a CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipgen.engine.trainer import RunConfig, autocast_dtype
from clipgen.models.attention import attention

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU


@pytest.mark.parametrize("amx, avx512_bf16", [(True, True), (True, False), (False, True), (False, False)])
def test_auto_is_bf16_where_the_hardware_multiplies_bf16_natively(monkeypatch, amx, avx512_bf16):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "amx_tile": amx, "avx512_bf16": avx512_bf16})
    auto, fp32, bf16 = (RunConfig(out_dir="x", precision=p) for p in ("auto", "fp32", "bf16"))
    assert autocast_dtype(auto, CPU) == (torch.bfloat16 if amx or avx512_bf16 else None)
    assert autocast_dtype(auto, CUDA) == torch.bfloat16
    assert autocast_dtype(fp32, CPU) is None and autocast_dtype(fp32, CUDA) is None
    assert autocast_dtype(bf16, CPU) == torch.bfloat16  # asked for: also where it is emulated


def test_cpu_attention_under_autocast_is_float32_and_equal_to_plain_attention():
    # torch's CPU flash-attention backward is several times slower in bf16 (models/attention.py)
    q, k, v = torch.randn(3, 2, 4, 16, 8).unbind(0)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), is_causal=True)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, F.scaled_dot_product_attention(*(t.bfloat16().float() for t in (q, k, v)), is_causal=True))
    assert torch.equal(attention(q, k, v, is_causal=True), expected)  # no autocast: SDPA as it is


def test_gpt_step_under_cpu_autocast_follows_the_float32_step():
    from clipgen.models.gpt import ConditionTransformer, GPTConfig

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=16, block_size=4, cond_dim=8, n_prefix=1, n_layer=1, n_head=2, n_embd=32, rope_2d=True)
    model = ConditionTransformer(config)
    cond, tokens, drop = torch.randn(6, 8), torch.randint(0, 16, (6, 4)), torch.zeros(6, dtype=torch.bool)

    def loss_and_gradient(amp: bool):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = model.loss(cond, tokens, drop)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (loss32, grad32), (loss16, grad16) = loss_and_gradient(False), loss_and_gradient(True)
    assert grad16.dtype == torch.float32  # the weights and their gradients stay float32
    assert loss16 != loss32  # autocast did take effect
    assert abs(loss16 - loss32) < 2e-2
    assert F.cosine_similarity(grad16, grad32, dim=0) > 0.99
