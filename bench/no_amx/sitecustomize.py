"""Put this folder on PYTHONPATH to run clipgen as an AVX2-only CPU (the AMD EPYC kind) would:
torch then reports no AMX tiles, so `run.precision: auto` picks float32 where it would pick bf16.
Python imports sitecustomize in every interpreter it starts, the demo's spawned runs included.

    PYTHONPATH=bench/no_amx python -m clipgen demo --out runs/demo-fp32

It changes the precision only: the kernels are still this CPU's (AVX-512 here), so the times are
not an EPYC's (BENCHMARKS.md scales them by the measured step ratio between the two kinds).
"""

import torch.cpu as _cpu

_cpu._is_amx_tile_supported = lambda: False
