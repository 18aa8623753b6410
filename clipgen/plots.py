"""PNG charts for reports: training curves read from run directories' metrics.jsonl."""

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
    import matplotlib

    matplotlib.use("Agg")  # no display on clusters
    import matplotlib.pyplot as plt

    from clipgen.engine.atomic import atomic_write

    columns = min(3, len(panels))
    rows_n = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows_n, columns, figsize=(4.2 * columns, 3.2 * rows_n), squeeze=False)
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
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.tight_layout()
    path = Path(path)
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return path
