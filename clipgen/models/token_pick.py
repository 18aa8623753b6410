"""The sampler's token pick: guidance, temperature, top-k, top-p, and the draw from each row's own
uniform stream.

Each row draws its token by inverse CDF from one uniform of its own per step (clipgen/sampling.py
makes the streams), so a row's tokens do not depend on what shares its batch; torch.multinomial
takes one generator for the whole batch. Every setting is one value for the batch or one per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _column(value: float | int | torch.Tensor, rows: int, dtype: torch.dtype, device) -> torch.Tensor:
    """One setting as a [rows, 1] column: a single value repeated, or one value per row."""
    column = torch.as_tensor(value, dtype=dtype).reshape(-1, 1).to(device)
    if column.shape[0] not in (1, rows):
        raise ValueError(f"a per-row sampling setting needs {rows} values, got {column.shape[0]}")
    return column.expand(rows, 1)


class RowPicker:
    """Picks each row's next token with that row's own settings and uniforms. What is the same
    for every step (which filters any row needs, the largest top-k) is settled once here, so a
    step costs no host-device synchronisation."""

    def __init__(self, rows: int, device, temperature, top_k, top_p, guidance_scale, uniforms: torch.Tensor):
        self.rows = rows
        self.scale = _column(guidance_scale, rows, torch.float32, device)
        self.temperature = _column(temperature, rows, torch.float32, device)
        self.top_k = _column(top_k, rows, torch.long, device)
        self.top_p = _column(top_p, rows, torch.float32, device)
        self.uniforms = uniforms.to(device=device, dtype=torch.float64)
        self.guided = bool((self.scale != 1).any())
        self.greedy = self.temperature <= 0
        self.all_greedy = bool(self.greedy.all())
        self.any_greedy = bool(self.greedy.any())
        self.max_k = int(self.top_k.max())
        self.any_top_p = bool((self.top_p < 1).any())
        # what a step would otherwise recompute; each shortcut leaves out only an operation that
        # cannot change a value (a division by 1, a choice between equal operands)
        self.unguided = self.scale == 1  # rows at scale 1 take their conditioned logits as they are
        self.any_unguided = bool(self.unguided.any())
        divisor = torch.where(self.greedy, 1.0, self.temperature)
        self.divisor = None if bool((divisor == 1).all()) else divisor
        bound = _top_k_bound(self.top_k, self.max_k)
        self.top_k_filter = _TopK(self.top_k, self.max_k) if self.max_k > 0 else None
        self.top_p_filter = _TopP(self.top_p, bound) if self.any_top_p else None
        self.among_top_k = _DrawAmongTopK(self.top_k, bound, self.top_p if self.any_top_p else None) if bound else None

    def pick(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """[rows or 2·rows, vocab] float logits -> [rows, 1] token ids."""
        if self.guided:
            cond, uncond = logits[: self.rows], logits[self.rows :]
            guided = uncond + self.scale * (cond - uncond)
            logits = torch.where(self.unguided, cond, guided) if self.any_unguided else guided
        if self.all_greedy:
            return logits.argmax(dim=-1, keepdim=True)
        scaled = logits if self.divisor is None else logits / self.divisor
        uniforms = self.uniforms[:, step]
        if self.among_top_k is not None and self.among_top_k.worth_it(scaled.shape[-1]):
            drawn = self.among_top_k(scaled, uniforms)
        else:
            if self.top_k_filter is not None:
                scaled = self.top_k_filter(scaled)
            if self.top_p_filter is not None:
                scaled = self.top_p_filter(scaled)
            drawn = draw_inverse_cdf(F.softmax(scaled, dim=-1), uniforms)
        return torch.where(self.greedy, logits.argmax(dim=-1, keepdim=True), drawn) if self.any_greedy else drawn


def draw_inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """[B, V] probabilities, [B] uniforms in [0, 1) -> [B, 1]: row b's token is the first whose
    cumulative probability exceeds uniforms[b]. One number per row and step, from the row's own
    stream, is what keeps a row's draw independent of the batch (torch.multinomial takes one
    generator for the whole batch)."""
    cdf = probs.cumsum(dim=-1, dtype=torch.float64)
    target = (uniforms * cdf[:, -1]).unsqueeze(1)
    picked = torch.searchsorted(cdf, target, right=True)
    # the first token whose cumulative probability exceeds the target has probability; only when
    # rounding lifts the target to the total is there none, and the limit of the inverse CDF, the
    # last token with probability (the first to reach the total), is taken instead
    return torch.where(picked < probs.shape[-1], picked, torch.searchsorted(cdf, target, right=False))


class _DrawAmongTopK:
    """Top-k, top-p and the draw of `RowPicker.pick` on the top-k candidates alone, for when every
    row keeps at most `max_k` tokens, a small part of the vocabulary: one torch.topk gives them
    sorted, top-p cuts that sorted list, and softmax and the cumulative sum run over `max_k`
    numbers, not the vocabulary. The draw walks the candidates in vocabulary order, so it picks
    the token the draw over the whole filtered vocabulary picks. Exactly k tokens are candidates:
    a token tied with the k-th is left out, as torch.topk leaves it."""

    def __init__(self, k: torch.Tensor, max_k: int, top_p: torch.Tensor | None):
        self.max_k = max_k
        # rows that keep fewer than max_k: their candidates past k go
        beyond = torch.arange(max_k, device=k.device) >= k
        self.beyond = beyond if bool(beyond.any()) else None
        self.cut = _TopPCut(top_p) if top_p is not None else None

    def worth_it(self, vocab: int) -> bool:
        return 4 * self.max_k <= vocab  # else a sort of the whole vocabulary is as fast (bench/bench_pick.py)

    def __call__(self, logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        values, tokens = torch.topk(logits, self.max_k, dim=-1)  # largest first
        if self.beyond is not None:
            values = values.masked_fill(self.beyond, float("-inf"))
        if self.cut is not None:
            values = self.cut(values)
        ascending, order = tokens.sort(dim=-1)
        probs = F.softmax(values, dim=-1).gather(-1, order)
        return ascending.gather(-1, draw_inverse_cdf(probs, uniforms))


class _TopPCut:
    """Top-p on logits sorted largest first, for a fixed [B, 1] column of p (1: keep the row whole):
    a token goes when the ones before it already reach p (the first always stays)."""

    def __init__(self, p: torch.Tensor):
        self.p, self.on = p, p < 1.0
        self.all_on = bool(self.on.all())

    def __call__(self, sorted_logits: torch.Tensor) -> torch.Tensor:
        sorted_probs = F.softmax(sorted_logits, dim=-1)
        reached = sorted_probs.cumsum(dim=-1) - sorted_probs >= self.p.to(sorted_logits.dtype)
        return sorted_logits.masked_fill(reached if self.all_on else reached & self.on, float("-inf"))


def filter_logits(
    logits: torch.Tensor, top_k: int | torch.Tensor = 0, top_p: float | torch.Tensor = 1.0, max_k: int | None = None
) -> torch.Tensor:
    """Keep the top_k largest logits and the smallest set whose probability reaches top_p; each is
    one value or a [B, 1] column (top_k 0 or top_p 1 leave that row unfiltered). `max_k`, the
    largest top_k, saves reading it back from the device at every step."""
    rows = logits.shape[0]
    k = _column(top_k, rows, torch.long, logits.device)
    max_k = int(k.max()) if max_k is None else max_k
    if max_k > 0:
        logits = _TopK(k, max_k)(logits)
    if isinstance(top_p, torch.Tensor) or top_p < 1.0:
        logits = _TopP(_column(top_p, rows, logits.dtype, logits.device), _top_k_bound(k, max_k))(logits)
    return logits


def _top_k_bound(k: torch.Tensor, max_k: int) -> int | None:
    """How many tokens at most survive top-k in every row ([B, 1] k, 0: keep the row), or None
    when some row keeps its whole vocabulary."""
    return max_k if max_k > 0 and bool((k > 0).all()) else None


class _TopK:
    """filter_logits' top-k step for a fixed [B, 1] column of k (0: keep the row whole)."""

    def __init__(self, k: torch.Tensor, max_k: int):
        self.k, self.max_k, self.vocab = k, max_k, None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != self.vocab:  # settled on the first step, reused by the others
            self.vocab = vocab = logits.shape[-1]
            k = self.k.clamp(max=vocab)
            self.kth_index, self.on = (k - 1).clamp(min=0), k > 0
            self.all_on = bool(self.on.all())
        kth = torch.topk(logits, min(self.max_k, self.vocab), dim=-1).values.gather(-1, self.kth_index)
        below = logits < kth
        return logits.masked_fill(below if self.all_on else self.on & below, float("-inf"))


class _TopP:
    """filter_logits' top-p step for a fixed [B, 1] column of p (1: keep the row whole).

    `within`: every row has already been cut to its top-k, at most `within` tokens, so when that is
    a small part of the vocabulary only those are sorted (torch.topk), not all of it: the pick at
    16384 codes with top-k 500 and top-p 0.95, clip-gen's settings, 1.37x (batch 1) and 1.59x (batch
    16) faster than a full sort (bench/bench_pick.py --before 3d5c04c, BENCHMARKS.md). Everything
    outside them ends at -inf, also a token tied with the k-th one that top-k had let through
    beside it."""

    def __init__(self, p: torch.Tensor, within: int | None = None):
        self.cut, self.within = _TopPCut(p), within

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.within is not None and 4 * self.within <= logits.shape[-1]:  # else a full sort is as fast
            sorted_logits, order = torch.topk(logits, self.within, dim=-1)
            out = torch.full_like(logits, float("-inf"))
        else:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            out = logits
        return out.scatter(-1, order, self.cut(sorted_logits))
