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


def reference_keep(row: torch.Tensor, k: int, p: float) -> torch.Tensor:
    """By definition: the k largest values, then of those the smallest head reaching p; a token
    stays when its logit is at least the last kept value (ties with it stay)."""
    values = row.sort(descending=True).values[:k]
    probs = torch.softmax(values.double(), dim=-1)
    kept = int(((probs.cumsum(0) - probs) < p).sum()) if p < 1 else k
    return row >= values[kept - 1]


def test_the_pick_keeps_ties_and_a_row_keeps_the_same_tokens_whatever_shares_its_batch():
    # bf16-rounded logits tie often at 4096 codes; which tied token torch.topk lists first varies,
    # so a row must not keep "the first k" but every token up to its threshold
    torch.manual_seed(0)
    logits = (torch.randn(4, 4096) * 2).bfloat16().float()
    k, p = torch.tensor([[50], [500], [50], [7]]), torch.tensor([[1.0], [0.95], [0.9], [1.0]])
    together = filter_logits(logits, top_k=k, top_p=p)
    for row in range(4):
        alone = filter_logits(logits[row : row + 1], top_k=int(k[row]), top_p=float(p[row]))
        assert torch.equal(torch.isfinite(alone[0]), torch.isfinite(together[row])), row
        assert torch.equal(torch.isfinite(together[row]), reference_keep(logits[row], int(k[row]), float(p[row]))), row
    assert int(torch.isfinite(together[0]).sum()) > 50  # ties with the 50th value stayed


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_a_rows_pick_does_not_depend_on_the_other_rows_settings(temperature):
    torch.manual_seed(1)
    uniforms = torch.rand(2, 30, dtype=torch.float64)
    alone = RowPicker(1, "cpu", temperature, 50, 0.9, 1.0, uniforms[:1])
    batched = RowPicker(2, "cpu", temperature, torch.tensor([50, 500]), torch.tensor([0.9, 1.0]), 1.0, uniforms)
    for step in range(30):
        logits = (torch.randn(2, 4096) * 3).bfloat16().float()
        assert torch.equal(alone.pick(logits[:1], step), batched.pick(logits, step)[:1]), step


def test_nan_logits_still_give_a_token_inside_the_vocabulary():
    probs = torch.full((2, 6), float("nan"))
    assert (draw_inverse_cdf(probs, torch.tensor([0.3, 0.9], dtype=torch.float64)) < 6).all()
