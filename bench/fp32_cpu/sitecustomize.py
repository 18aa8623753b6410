"""Put this folder on PYTHONPATH to run clipgen as a CPU without bf16 instructions (AVX2 only,
the older AMD EPYC kind) would: torch then reports neither AMX tiles nor AVX512-BF16, so
`run.precision: auto` picks float32 where it would pick bf16, and Muon runs its Newton–Schulz steps
in float32 (train/muon.py, Float32Muon). Python imports sitecustomize in every interpreter it
starts, the demo's spawned runs included.

    PYTHONPATH=bench/fp32_cpu python -m clipgen demo --out runs/demo-fp32

It changes what clipgen chooses only: the kernels are still this CPU's (AVX-512 here). To hold
torch's, oneDNN's and MKL's kernels to AVX2 as well (BENCHMARKS.md, "An AVX2-only CPU emulated"):
ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2.
"""

import torch.cpu as _cpu

_real_capabilities = _cpu.get_capabilities
_cpu.get_capabilities = lambda: {**_real_capabilities(), "amx_tile": False, "avx512_bf16": False}
