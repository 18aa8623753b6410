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

from clipgen.models.gpt import ConditionTransformer, KVCache, _DecodeStep


class StaticDecodeStep(_DecodeStep):
    """`_DecodeStep` with the position as a 0-d long tensor on the cache's device. The cache must
    start zeroed: masked positions weigh 0 in attention, but 0 × NaN garbage is still NaN."""

    def __init__(self, model: ConditionTransformer, cache: KVCache, bias: torch.Tensor | None, layer_bias: torch.Tensor | None):
        super().__init__(model, cache, bias, layer_bias)
        self.slots = torch.arange(cache.k.shape[3], device=cache.k.device)

    def position_row(self, pos: torch.Tensor) -> torch.Tensor:
        return self.model.pos_emb.weight.index_select(0, pos.view(1))

    def rotate(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.rope.rotate(x, self.rope.cos.index_select(0, pos.view(1)), self.rope.signed_sin.index_select(0, pos.view(1)))

    def store(self, cache_layer: torch.Tensor, x: torch.Tensor, pos: torch.Tensor) -> None:
        cache_layer.index_copy_(2, pos.view(1), x)

    def attend(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=(self.slots <= pos).view(1, -1))

    def __call__(self, tokens: torch.Tensor, pos: int | torch.Tensor) -> torch.Tensor:
        if not isinstance(pos, torch.Tensor):
            pos = torch.tensor(pos, device=tokens.device)
        return super().__call__(tokens, pos)


class GraphedDecodeStep:
    """A StaticDecodeStep captured once as a CUDA graph and replayed at every step: the token ids
    and the position are copied into the graph's own input tensors, and the logits it returns are
    the graph's output tensor, overwritten by the next replay (the sampler has picked from them by
    then: the pick runs on the same stream)."""

    def __init__(self, step: StaticDecodeStep, rows: int):
        device = step.cache.k.device
        self.cache = step.cache
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
        self.cache.length = pos + 1
        return self.logits


def static_decode_step(model: ConditionTransformer, cache: KVCache, bias, layer_bias, rows: int):
    """The fixed-shape step for `cache` (zeroed), as a CUDA graph where the cache is on a GPU."""
    step = StaticDecodeStep(model, cache, bias, layer_bias)
    return GraphedDecodeStep(step, rows) if cache.k.device.type == "cuda" else step
