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
        self.uniforms = uniforms.to(device=device, dtype=torch.float64)
        self.guided = bool((self.scale != 1).any())
        self.greedy = self.temperature <= 0
        self.all_greedy = bool(self.greedy.all())
        self.any_greedy = bool(self.greedy.any())
        # what a step would otherwise recompute; each shortcut leaves out only an operation that
        # cannot change a value (a division by 1, a choice between equal operands)
        self.unguided = self.scale == 1  # rows at scale 1 take their conditioned logits as they are
        self.any_unguided = bool(self.unguided.any())
        divisor = torch.where(self.greedy, 1.0, self.temperature)
        self.divisor = None if bool((divisor == 1).all()) else divisor
        self.filters = _filters(top_k, top_p, rows, device)

    def pick(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        """[rows or 2·rows, vocab] float logits -> [rows, 1] token ids."""
        if self.guided:
            cond, uncond = logits[: self.rows], logits[self.rows :]
            guided = uncond + self.scale * (cond - uncond)
            logits = torch.where(self.unguided, cond, guided) if self.any_unguided else guided
        if self.all_greedy:
            return logits.argmax(dim=-1, keepdim=True)
        filtered = logits if self.divisor is None else logits / self.divisor
        for keep in self.filters:
            filtered = keep(filtered)
        drawn = draw_inverse_cdf(F.softmax(filtered, dim=-1), self.uniforms[:, step])
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
    # last token with probability (the first to reach the total), is taken instead; NaN logits
    # (a broken model) still give an id inside the vocabulary
    last = torch.searchsorted(cdf, target, right=False).clamp(max=probs.shape[-1] - 1)
    return torch.where(picked < probs.shape[-1], picked, last)


def filter_logits(logits: torch.Tensor, top_k: int | torch.Tensor = 0, top_p: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Keep the top_k largest logits and, of those, the smallest set whose probability reaches
    top_p; the rest become -inf. Each setting is one value or a [B, 1] column (top_k 0 or top_p 1
    leave that row unfiltered). A token tied with the last one kept stays too, so what a row keeps
    does not depend on how ties are ordered, nor on the other rows' settings."""
    for keep in _filters(top_k, top_p, logits.shape[0], logits.device):
        logits = keep(logits)
    return logits


def _filters(top_k, top_p, rows: int, device) -> list:
    """The filter steps for these settings (one value or one per row): when every row has a top-k,
    one step does both from a single torch.topk; else top-k on the rows that have one, then top-p
    over a full sort. Settled once per call, so a sampling step reads nothing back from the device."""
    k, p = _column(top_k, rows, torch.long, device), _column(top_p, rows, torch.float32, device)
    max_k, any_top_p = int(k.max()), bool((p < 1).any())
    if max_k > 0 and bool((k > 0).all()):
        return [_TopKThenP(k, max_k, p if any_top_p else None)]
    return ([_TopK(k, max_k)] if max_k > 0 else []) + ([_TopP(p)] if any_top_p else [])


class _TopKThenP:
    """Top-k, then top-p among the k largest, for fixed [B, 1] columns (every k > 0; p None: no
    top-p), as one threshold per row: the larger of the k-th largest logit and the smallest logit
    top-p keeps. Only the `max_k` largest logits are sorted (torch.topk), not the vocabulary: at
    16384 codes with top-k 500 and top-p 0.95 (clip-gen's settings) the pick is 1.3-1.6x faster than
    top-k's mask followed by a second sort for top-p (bench/bench_pick.py, BENCHMARKS.md)."""

    def __init__(self, k: torch.Tensor, max_k: int, p: torch.Tensor | None):
        self.k, self.max_k, self.vocab = k, max_k, None
        self.cut = _TopPCut(p) if p is not None else None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != self.vocab:  # settled on the first step, reused by the others
            self.vocab = logits.shape[-1]
            self.width = min(self.max_k, self.vocab)
            k = self.k.clamp(max=self.vocab)
            self.kth_index = k - 1
            beyond = torch.arange(self.width, device=k.device) >= k  # rows whose k is below max_k
            self.beyond = beyond if bool(beyond.any()) else None
        largest = torch.topk(logits, self.width, dim=-1).values  # largest first
        threshold = largest.gather(-1, self.kth_index)
        if self.cut is not None:
            # top-p over each row's own k largest values: the same numbers however ties are ordered
            head = largest if self.beyond is None else largest.masked_fill(self.beyond, float("-inf"))
            kept = (~self.cut.dropped(head)).sum(dim=-1, keepdim=True)
            threshold = torch.maximum(threshold, largest.gather(-1, kept - 1))
        return logits.masked_fill(logits < threshold, float("-inf"))


class _TopK:
    """Top-k for a fixed [B, 1] column of k where some rows have none (0: keep the row whole)."""

    def __init__(self, k: torch.Tensor, max_k: int):
        self.k, self.max_k, self.vocab = k, max_k, None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != self.vocab:  # settled on the first step, reused by the others
            self.vocab = vocab = logits.shape[-1]
            k = self.k.clamp(max=vocab)
            self.kth_index, self.on = (k - 1).clamp(min=0), k > 0
        kth = torch.topk(logits, min(self.max_k, self.vocab), dim=-1).values.gather(-1, self.kth_index)
        return logits.masked_fill(self.on & (logits < kth), float("-inf"))


class _TopP:
    """Top-p over the whole vocabulary (a full sort), for a fixed [B, 1] column of p (1: keep the
    row whole); for when some row has no top-k to sort within."""

    def __init__(self, p: torch.Tensor):
        self.cut = _TopPCut(p)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        sorted_logits = torch.sort(logits, descending=True, dim=-1).values
        kept = (~self.cut.dropped(sorted_logits)).sum(dim=-1, keepdim=True)
        return logits.masked_fill(logits < sorted_logits.gather(-1, kept - 1), float("-inf"))


class _TopPCut:
    """Which of a row's logits, sorted largest first, top-p drops, for a fixed [B, 1] column of p
    (1: none): a token goes when the ones before it already reach p; the first always stays."""

    def __init__(self, p: torch.Tensor):
        self.p, self.on = p, p < 1.0
        self.all_on = bool(self.on.all())

    def dropped(self, sorted_logits: torch.Tensor) -> torch.Tensor:
        sorted_probs = F.softmax(sorted_logits, dim=-1)
        reached = sorted_probs.cumsum(dim=-1) - sorted_probs >= self.p.to(sorted_logits.dtype)
        return reached if self.all_on else reached & self.on
