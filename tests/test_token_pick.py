"""The sampler's token pick (models/token_pick.py): top-k, top-p and the per-row inverse-CDF draw."""

import pytest
import torch
import torch.nn.functional as F

from clipgen.models.token_pick import RowPicker, draw_inverse_cdf, filter_logits


def test_inverse_cdf_draws_the_distribution_and_never_a_token_without_probability():
    probs = torch.tensor([[0.0, 0.2, 0.0, 0.5, 0.3, 0.0]]).expand(20000, 6)
    tokens = draw_inverse_cdf(probs, torch.rand(20000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    counts = torch.bincount(tokens.flatten(), minlength=6) / 20000
    assert counts[[0, 2, 5]].sum() == 0
    assert torch.allclose(counts[[1, 3, 4]], torch.tensor([0.2, 0.5, 0.3]), atol=0.015)
    # the largest uniform below 1 still lands on a token with probability
    edge = draw_inverse_cdf(probs[:1], torch.tensor([1 - 2**-53], dtype=torch.float64))
    assert edge.item() == 4


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.8)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.81)).tolist() == [[False, False, False, True]]
    assert not torch.isinf(filter_logits(logits)).any()


def test_top_p_within_the_top_k_keeps_what_the_full_sort_keeps():
    # with every row cut to its top-k first, top-p sorts only those candidates (a large vocabulary)
    torch.manual_seed(0)
    logits = torch.randn(6, 4096) * 3
    k, p = torch.tensor([[5], [50], [500], [1], [200], [64]]), torch.tensor([[0.9], [0.5], [0.95], [0.9], [0.99], [1.0]])
    fast = filter_logits(logits, top_k=k, top_p=p)
    reference = logits.clone()
    for row in range(6):  # one row at a time, by definition: the top k, then the smallest head reaching p
        order = reference[row].argsort(descending=True)
        keep = order[: int(k[row])]
        probs = torch.softmax(reference[row, keep], dim=-1)
        before = probs.cumsum(0) - probs
        keep = keep[before < float(p[row])]
        mask = torch.ones(4096, dtype=torch.bool)
        mask[keep] = False
        reference[row, mask] = float("-inf")
    assert torch.equal(torch.isinf(fast), torch.isinf(reference))
    assert torch.equal(fast[~torch.isinf(fast)], logits[~torch.isinf(fast)])


def test_at_the_limit_the_draw_takes_the_last_token_with_probability():
    # a target rounded up to the total has no token above it: the inverse CDF's limit is the last
    # token with probability, not the vocabulary's last (probability 0) nor the most likely one
    probs = torch.tensor([[0.0, 0.2, 0.0, 0.5, 0.3, 0.0]])
    assert draw_inverse_cdf(probs, torch.tensor([1.0], dtype=torch.float64)).item() == 4


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_draw_among_the_top_k_picks_what_the_draw_over_the_filtered_vocabulary_picks(temperature):
    # every row has a top-k, a small part of the vocabulary: the picker draws among the top-k
    # candidates alone; the token must be the one the whole filtered vocabulary gives
    torch.manual_seed(0)
    rows, vocab, steps = 6, 4096, 40
    k = torch.tensor([5, 50, 500, 1, 200, 64])
    p = torch.tensor([0.9, 0.5, 0.95, 0.9, 1.0, 1.0])
    uniforms = torch.rand(rows, steps, dtype=torch.float64)
    picker = RowPicker(rows, "cpu", temperature, k, p, 1.0, uniforms)
    assert picker.among_top_k is not None and picker.among_top_k.worth_it(vocab)
    for step in range(steps):
        logits = torch.randn(rows, vocab) * 3
        filtered = filter_logits(logits / temperature, top_k=k.view(-1, 1), top_p=p.view(-1, 1))
        expected = draw_inverse_cdf(F.softmax(filtered, dim=-1), uniforms[:, step])
        assert torch.equal(picker.pick(logits, step), expected), step
