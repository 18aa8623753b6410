"""Strict state_dict loading with errors that name what does not fit."""

from __future__ import annotations

import torch
from torch import nn


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `model`, naming every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mis_shaped)):
        if keys:
            shown = ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ValueError(f"{source} does not fit this model's config; " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


# --- the native model directory: config.json (with a format tag) + model.safetensors ---------------

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_model_dir(model: nn.Module, directory, format_tag: str, config: dict) -> None:
    """Write `config` (tagged with `format_tag`) and the weights, each file atomically."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    from clipgen.engine.atomic import atomic_write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": format_tag})
    with atomic_write(directory / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps({"format": format_tag, **config}, indent=2, ensure_ascii=False), encoding="utf-8")


def read_model_dir(directory, format_tag: str, what: str, map_location: str = "cpu") -> tuple[dict, dict[str, torch.Tensor]]:
    """(config without its tag, weights) of a directory `save_model_dir` wrote; clear errors otherwise."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    from clipgen.config import ConfigError

    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {directory} is not a {what} directory")
    meta = json.loads(config_path.read_text(encoding="utf-8"))
    if meta.pop("format", None) != format_tag:
        raise ConfigError(f"{config_path} is not a {what} config (no format: {format_tag})")
    return meta, load_file(str(weights_path), device=map_location)
