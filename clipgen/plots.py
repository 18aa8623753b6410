"""PNG charts for reports: training curves read from run directories' metrics.jsonl, and bar
charts of metrics per run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (one JSON object per logged step)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a training run directory")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def series(rows: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    steps = [row["step"] for row in rows if key in row]
    return steps, [row[key] for row in rows if key in row]


def plot_training_curves(panels: Mapping[str, Mapping[str, tuple[str | Path, str]]], path: str | Path) -> Path:
    """One panel per title; each panel draws named lines, each line a (run_dir, metric key).
    Lines whose metric a run never logged are left out; the file is written whole or not at all."""
    figure, axes = _figure(len(panels))
    for ax, (title, lines) in zip(axes.flat, panels.items()):
        drawn = 0
        for label, (run_dir, key) in lines.items():
            steps, values = series(read_metrics(run_dir), key)
            if steps:
                ax.plot(steps, values, label=label, marker="o" if len(steps) < 8 else None)
                drawn += 1
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if drawn > 1:
            ax.legend(fontsize=8)
    return _save(figure, axes, len(panels), path)


def plot_metric_bars(metrics: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """One panel per metric, one bar per run (metrics: run -> metric -> value)."""
    names = list(metrics)
    keys = list(dict.fromkeys(k for values in metrics.values() for k in values))
    figure, axes = _figure(len(keys), width=max(4.2, 0.8 * len(names) + 1.5))
    for ax, key in zip(axes.flat, keys):
        values = [metrics[name].get(key, float("nan")) for name in names]
        bars = ax.bar(range(len(names)), values, color=[f"C{i}" for i in range(len(names))])
        ax.bar_label(bars, fmt="%.3g", fontsize=7)  # distances can be ~0.01, accuracies ~99
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(key)
        ax.grid(alpha=0.3, axis="y")
    return _save(figure, axes, len(keys), path)


def _figure(panels: int, width: float = 4.2):
    import matplotlib

    matplotlib.use("Agg")  # no display on clusters
    import matplotlib.pyplot as plt

    columns = min(3, max(panels, 1))
    rows = math.ceil(max(panels, 1) / columns)
    return plt.subplots(rows, columns, figsize=(width * columns, 3.2 * rows), squeeze=False)


def _save(figure, axes, used: int, path: str | Path) -> Path:
    """Blank the unused panels and write the PNG whole or not at all."""
    import matplotlib.pyplot as plt

    from clipgen.engine.atomic import atomic_write

    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    figure.tight_layout()
    path = Path(path)
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path
