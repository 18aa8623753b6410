"""bench/device_figures.py, the GPU figures of issue 12 part 2, runs end to end at tiny shapes on
the CPU, so the session that has a GPU can spend its minutes measuring, not debugging."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import device_figures  # noqa: E402
from clipgen.models.gpt import ConditionTransformer, GPTConfig  # noqa: E402


def test_every_section_runs_at_tiny_shapes_and_prints_its_figures(capsys):
    # torch.compile is left out here (a C++ compiler and ~20 s on a CPU); its rows run eager
    device_figures.main(["--tiny", "--no-compile", "--peak-tflops", "1"])
    out = capsys.readouterr().out
    for section in ("## train", "## sample", "## vqgan", "## extract"):
        assert section in out
    assert re.search(r"compile \+ Muon \(config\)\s+[\d.]+\s+\d+\s+[\d.]+%", out)  # ms/step, tokens/s, MFU
    for sampler in ("KV cache", "KV static"):  # the static step runs eagerly on a CPU
        assert len(re.findall(sampler + r"\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+%", out)) == 4  # 2 dtypes × 2 batches
    assert re.search(r"extract-then-train speed-up [\d.]+×", out)


def test_flops_per_token_count_the_multiplied_parameters_and_attention():
    cfg = GPTConfig(vocab_size=50, block_size=16, cond_dim=8, n_prefix=2, n_layer=2, n_head=2, n_embd=8)
    model = ConditionTransformer(cfg)
    blocks = 2 * (8 * 24 + 8 * 8 + 8 * 32 + 32 * 8 + 2 * 8)  # qkv, proj, mlp in and out, two norms
    multiplied = blocks + 8 + 8 * 50  # final norm, head
    assert device_figures.flops_per_token(model) == 6 * multiplied + 12 * 2 * 8 * (2 + 16 - 1)


def test_the_peak_comes_from_the_flag_or_the_datasheet_table_and_cpus_need_tiny(monkeypatch):
    import torch

    assert device_figures.peak_tflops(torch.device("cpu"), None) is None
    assert device_figures.peak_tflops(torch.device("cpu"), 42.0) == 42.0
    monkeypatch.setattr(device_figures, "device_name", lambda device: "NVIDIA H100 PCIe")
    assert device_figures.peak_tflops(torch.device("cuda"), None) == 756.0
    with pytest.raises(SystemExit, match="--tiny"):
        device_figures.main(["--device", "cpu"])
