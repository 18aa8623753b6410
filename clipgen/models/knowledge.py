"""ARTIST's entity knowledge (EasyNLP's `pai-artist-knowl-*`), as its condition transformer mixes
it in: after the last block, before the final norm, into the prefix (the caption's positions).

Each of a caption's matched entities is a [n_prefix, C] matrix: `ent_emb` of the entity's vector
at the caption positions the word covers, of entity 0's vector elsewhere (ARTIST's filler id is a
real entity). The entities are weighted by a softmax over their plain dot products with the
prefix's final hidden states, all n_prefix·C numbers at once (no 1/sqrt scaling), and the weighted
sum is added to every prefix position. Nothing attends to the prefix after this, so the only
output that changes is the last prefix position's: the first image token's logits.
"""

from __future__ import annotations

import torch


def mix_entity_knowledge(h: torch.Tensor, entities: torch.Tensor) -> torch.Tensor:
    """h [B, T, C] final hidden states; entities [B, E, P, C] embedded entity matrices over the
    first P positions -> h with the knowledge added to those positions."""
    prefix = h[:, : entities.shape[2]]
    scores = torch.einsum("bpc,bepc->be", prefix, entities)
    # ARTIST masks a score of exactly 0 as if it were padding
    # (the dtype's lowest value, not a constant: -1e30 overflows to -inf in half precision)
    weights = scores.masked_fill(scores == 0, torch.finfo(scores.dtype).min).softmax(dim=-1)
    mixed = prefix + torch.einsum("be,bepc->bpc", weights, entities)
    return torch.cat([mixed, h[:, entities.shape[2] :]], dim=1)
