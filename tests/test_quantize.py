import pytest
import torch

from clipgen.models.quantize import QuantizerConfig, VectorQuantizer, codebook_stats


def _grads(legacy: bool):
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, QuantizerConfig(beta=0.25, legacy_beta=legacy))
    vq.embedding.weight.data.normal_()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    out.loss.backward()
    return vq.embedding.weight.grad.abs().sum().item(), out, z


def test_beta_weights_the_commitment_term_unless_legacy():
    # the codebook gradient comes only from the codebook term: β scales it in the legacy form
    correct, _, _ = _grads(legacy=False)
    legacy, _, _ = _grads(legacy=True)
    assert legacy == pytest.approx(0.25 * correct, rel=1e-5)


def test_nearest_code_and_straight_through():
    vq = VectorQuantizer(3, 2)
    vq.embedding.weight.data = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]])
    z = torch.tensor([[0.9, 1.2], [-0.8, 1.7], [0.1, -0.1]]).t().reshape(1, 2, 1, 3).requires_grad_()
    out = vq(z)
    assert out.indices.tolist() == [[[1, 2, 0]]]
    assert torch.equal(out.quantized.detach(), vq.indices_to_codes(out.indices))
    out.quantized.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # identity gradient to the encoder


def test_l2_norm_codes_are_unit_length():
    vq = VectorQuantizer(8, 4, QuantizerConfig(l2_norm=True))
    vq.embedding.weight.data.normal_()
    out = vq(torch.randn(2, 4, 2, 2) * 5)
    torch.testing.assert_close(out.quantized.norm(dim=1), torch.ones(2, 2, 2))


def test_dead_codes_restart_onto_recent_inputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 2, QuantizerConfig(restart_every=1))
    vq.embedding.weight.data = torch.stack([torch.full((2,), float(i)) for i in range(8)])
    z = torch.full((1, 2, 2, 2), 0.1)  # every vector picks code 0: codes 1..7 are dead
    vq.train()(z)
    assert vq.restart_dead_codes().tolist() == list(range(1, 8))
    moved = vq.embedding.weight.data[1:]
    torch.testing.assert_close(moved, torch.full((7, 2), 0.1))
    assert len(vq.restart_dead_codes()) == 8  # no inputs since: every count is zero again


def test_error_restarts_go_to_what_the_codebook_represents_worst():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, QuantizerConfig(restart_every=1, restart_pick="error"))
    vq.embedding.weight.data = torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]])
    # 13 vectors sit on code 0 (the "background"), three lie far from every code
    outliers = torch.tensor([[5.0, -5.0], [-5.0, 5.0], [6.0, -6.0]])
    z = torch.zeros(1, 2, 4, 4)
    z[0, :, 3, 1:] = outliers.t()
    vq.train()(z)
    dead = vq.restart_dead_codes()
    assert dead.tolist() == [1, 2, 3]
    # a uniform pick would land on the background 13 times in 16; the error pick never does, and
    # takes each outlier once rather than piling codes onto one
    moved = sorted(map(tuple, vq.embedding.weight.data[1:].tolist()))
    assert moved == sorted(map(tuple, outliers.tolist()))


def test_codebook_stats():
    stats = codebook_stats(torch.tensor([0, 1, 2, 3]), 8)
    assert stats["usage_pct"] == 50.0 and stats["perplexity"] == pytest.approx(4.0)


def test_indices_under_bf16_autocast_equal_float32():
    torch.manual_seed(0)
    vq = VectorQuantizer(4096, 8, QuantizerConfig(l2_norm=True)).eval()
    vq.embedding.weight.data.normal_()
    z = torch.randn(4, 8, 16, 16)
    expected = vq(z).indices
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z)
    assert torch.equal(out.indices, expected) and out.quantized.dtype == torch.float32


def test_commitment_gradient_is_scaled_by_beta():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, QuantizerConfig(beta=0.25))
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    # without the straight-through path, the encoder's gradient is the commitment term's alone
    out.loss.backward()
    expected = 0.25 * 2 * (z.detach().permute(0, 2, 3, 1) - vq.indices_to_codes(out.indices).permute(0, 2, 3, 1)) / z.numel()
    torch.testing.assert_close(z.grad, expected.permute(0, 3, 1, 2))


@pytest.mark.parametrize("l2_norm", [False, True])
def test_one_hot_weights_give_the_codes_of_their_indices_and_carry_gradients(l2_norm):
    vq = VectorQuantizer(16, 4, QuantizerConfig(l2_norm=l2_norm))
    indices = torch.randint(0, 12, (2, 3, 3))
    weights = torch.nn.functional.one_hot(indices, 12).float().requires_grad_()  # the first 12 codes only
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes = vq.one_hot_to_codes(weights)
    assert codes.dtype == torch.float32
    torch.testing.assert_close(codes, vq.indices_to_codes(indices))
    codes.sum().backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0
