"""The KV-cache decoding step over fixed shapes, replayed as one CUDA graph on a GPU.

On a GPU a cached step of the condition transformer is a few hundred small kernels, each of
which waits for its launch: at batch 1 the launches, not the weights, set the time. A CUDA graph
records them once and replays them with one launch, but it needs every shape and address fixed,
and the ordinary step (`gpt._DecodeStep`) reads a cache that grows by one position per step. This
step therefore attends over the whole cache, the positions not yet written masked out, and takes
its position as a device tensor: its kernels, shapes and addresses are the same at every step.
On a CPU the same step runs without a graph (that is how the tests check it against the ordinary
one). The masked attention is another kernel than the ordinary step's, so the logits agree to
rounding, not bit for bit. Each `sample` call zeroes its cache and captures its own graph (the
cache's addresses are the graph's), and every step reads the whole cache, written or not: at
large batches, where the cache's bytes rival the weights', the ordinary step may stay faster.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class FixedShapeCache:
    """How the fixed-shape step addresses the KV cache (the ordinary one's is gpt.GrowingCache):
    the position is a 0-d long tensor on the device, table rows are gathered with it, a cache slot
    is written with index_copy_, and attention reads every slot with the unwritten ones masked. The
    cache must start zeroed: a masked slot weighs 0, but 0 × NaN garbage is still NaN."""

    def __init__(self, slots: int, device):
        self.slots = torch.arange(slots, device=device)

    @staticmethod
    def position(pos: int | torch.Tensor, device) -> torch.Tensor:
        return pos if isinstance(pos, torch.Tensor) else torch.tensor(pos, device=device)

    @staticmethod
    def row(table: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return table.index_select(0, pos.view(1))

    @staticmethod
    def store(cache_layer: torch.Tensor, x: torch.Tensor, pos: torch.Tensor) -> None:
        cache_layer.index_copy_(2, pos.view(1), x)

    def visible(self, pos: torch.Tensor) -> torch.Tensor:
        """The mask of the slots written so far, once per step."""
        return (self.slots <= pos).view(1, -1)

    @staticmethod
    def attend(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=visible)


class GraphedDecodeStep:
    """A fixed-shape decoding step captured once as a CUDA graph and replayed at every step: the
    token ids and the position are copied into the graph's own input tensors, and the logits it
    returns are the graph's output tensor, overwritten by the next replay (the sampler has picked
    from them by then: the pick runs on the same stream)."""

    def __init__(self, step):
        cache = step.cache
        device, rows = cache.k.device, cache.k.shape[1]
        # the graph replays reads of the step's tensors (the cache, the mask's slot positions, the
        # condition rows) by address: keep them alive as long as the graph
        self.step = step
        self.tokens = torch.zeros(rows, dtype=torch.long, device=device)
        # the warm-up writes the first image token's slot, which the first real step writes
        # again before anything reads it (capturing records the kernels without running them)
        self.pos = torch.tensor(step.model.config.n_prefix, device=device)
        with torch.cuda.device(device):  # capture uses the current device's streams
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # what torch.cuda.graphs asks: warm up off the capture stream
                step(self.tokens, self.pos)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = step(self.tokens, self.pos)

    def __call__(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        self.tokens.copy_(tokens)
        self.pos.fill_(pos)
        self.graph.replay()
        return self.logits


def graphed(step):
    """`step` (a gpt._DecodeStep on a FixedShapeCache) as a replayed CUDA graph where its cache is
    on a GPU; on a CPU, the step itself."""
    return GraphedDecodeStep(step) if step.cache.k.device.type == "cuda" else step
