import pytest
import torch

from clipgen.models.gpt import ConditionTransformer, GPTConfig
from clipgen.models.rope import Rope2D


def test_scores_depend_on_the_offset_between_grid_tokens_not_on_where_they_are():
    torch.manual_seed(0)
    rope = Rope2D(head_dim=8, n_prefix=2, grid_tokens=16, theta=100.0).double()
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    side = 4

    def score(query_cell, key_cell):
        # the same vectors placed at two grid cells; positions count the 2 prefix tokens first
        at = lambda vec, cell: rope(vec.repeat(1, 1, 2 + side * side, 1), 0)[0, 0, 2 + cell[0] * side + cell[1]]
        return (at(q, query_cell) @ at(k, key_cell)).item()

    # one row down and one column left, from two different places (float32 tables)
    assert score((1, 2), (0, 3)) == pytest.approx(score((3, 1), (2, 2)), abs=1e-5)
    assert score((1, 2), (0, 3)) != pytest.approx(score((1, 2), (0, 2)), abs=1e-6)


def test_the_prefix_is_not_rotated_and_rotation_keeps_norms():
    rope = Rope2D(head_dim=8, n_prefix=3, grid_tokens=9, theta=100.0)
    x = torch.randn(2, 1, 12, 8)
    rotated = rope(x, 0)
    assert torch.equal(rotated[:, :, :3], x[:, :, :3])
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    # a step of a cached sampler sees the same rotation as the whole sequence
    assert torch.allclose(rope(x[:, :, 7:8], 7), rotated[:, :, 7:8])


def test_rope_needs_a_square_grid_and_adds_nothing_to_the_checkpoint():
    with pytest.raises(ValueError, match="square token grid"):
        Rope2D(head_dim=8, n_prefix=1, grid_tokens=12, theta=100.0)
    cfg = dict(vocab_size=11, block_size=16, cond_dim=4, n_prefix=2, n_layer=1, n_head=2, n_embd=16)
    plain, rotary = ConditionTransformer(GPTConfig(**cfg)), ConditionTransformer(GPTConfig(**cfg, rope_2d=True))
    assert plain.state_dict().keys() == rotary.state_dict().keys()
