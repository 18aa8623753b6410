"""What `clipgen compare` writes: metrics.json, metrics.csv, report.md, bars.png and grids/."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from clipgen.engine.atomic import atomic_write

# the column order of every table: distances first (lower is better), then scores (higher is better)
METRIC_ORDER = ["fd_inception", "fd_clip", "clip_score", "colour", "shape", "size", "position"]
LABELS = {
    "fd_inception": "FID ↓", "fd_clip": "FD (CLIP) ↓", "clip_score": "CLIP score ↑",
    "colour": "colour % ↑", "shape": "shape % ↑", "size": "size % ↑", "position": "position % ↑",
}  # fmt: skip


def metric_columns(metrics: dict[str, dict[str, float]]) -> list[str]:
    present = {key for values in metrics.values() for key in values}
    return [key for key in METRIC_ORDER if key in present] + sorted(present - set(METRIC_ORDER))


def markdown_table(metrics: dict[str, dict[str, float]], first_column: str = "run") -> str:
    columns = metric_columns(metrics)
    lines = [f"| {first_column} | " + " | ".join(LABELS.get(c, c) for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]  # fmt: skip
    for name, values in metrics.items():
        cells = [_cell(values.get(column, float("nan")), column) for column in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float, column: str) -> str:
    if math.isnan(value):
        return "–"
    # distances span orders of magnitude between feature spaces (a normalised CLIP space gives
    # values well below 1): three significant digits; percentages and scores: one decimal
    return f"{value:.3g}" if column.startswith("fd_") else f"{value:.1f}"


def write_report(out: Path, summary: dict, grid_prompts: Sequence[str]) -> Path:
    from clipgen.plots import plot_metric_bars

    metrics = summary["metrics"]
    _write_text(out / "metrics.json", json.dumps(summary, indent=2, ensure_ascii=False))
    _write_text(out / "metrics.csv", _csv(metrics))
    plot_metric_bars({name: {LABELS.get(k, k): v for k, v in values.items()} for name, values in metrics.items()}, out / "bars.png")
    grids = write_grids(out, list(metrics), grid_prompts, summary["num_images"])
    spaces = "; ".join(f"`{name}`: {what}" for name, what in summary["feature_spaces"].items())
    scorer = summary["scoring_clip"] + (" (the CLIP the runs were conditioned on: no other was given)"
                                        if summary["scoring_clip_is_conditioning_clip"] else "")  # fmt: skip
    lines = [
        "# clipgen compare", "",
        f"{summary['prompts']} prompts from `{summary['prompts_file']}`, {summary['num_images']} image(s) each, "
        f"seed {summary['seed']} (prompt batch b of {summary['batch_size']} uses seed + b), clipgen runs sampled with "
        f"{summary['sampling']}.", "",
        markdown_table(metrics), "",
        "- Generators:", *(f"  - `{name}`: {what}" for name, what in summary["generators"].items()),
        f"- Fréchet distances: against {summary['real_images']} real images from `{summary['real_source'] or '(none)'}`; "
        f"feature spaces {spaces}.",
        f"- CLIP score: mean of max(100·cos, 0) under `{scorer}`.",
        "- Attribute accuracy: the shapes-zh geometric judge (independent of every generator)"
        if summary["judge"] else "- Attribute accuracy: not measured (not every prompt is a shapes-zh description).",
        "", "![metrics](bars.png)", "", "## Side by side", "", "One row per run, in the table's order.", "",
    ]  # fmt: skip
    for i, (prompt, grid) in enumerate(zip(grid_prompts, grids)):
        lines += [f"{i}. {prompt}", "", f"![{i}]({grid.relative_to(out).as_posix()})", ""]
    lines += ["## Regenerate", "", "```", summary["command"], "```", ""]
    path = out / "report.md"
    _write_text(path, "\n".join(lines))
    return path


def _csv(metrics: dict[str, dict[str, float]]) -> str:
    columns = metric_columns(metrics)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", *columns])
    for name, values in metrics.items():
        writer.writerow([name, *(f"{values[c]:.4f}" if c in values else "" for c in columns)])
    return buffer.getvalue()


def write_grids(out: Path, names: list[str], prompts: Sequence[str], num_images: int) -> list[Path]:
    """grids/{i:04d}.png: one row per run (labelled), one column per sample, from the saved samples."""
    paths = []
    for i in range(len(prompts)):
        rows = [[Image.open(out / "samples" / name / f"{i:04d}_{k}.png").convert("RGB") for k in range(num_images)] for name in names]
        paths.append(_save_png(out / "grids" / f"{i:04d}.png", labelled_grid(names, rows)))
    return paths


def labelled_grid(labels: Sequence[str], rows: Sequence[Sequence[Image.Image]], label_width: int = 120) -> Image.Image:
    side = max(64, rows[0][0].width)  # small samples are enlarged, pixel for pixel, to be seen
    grid = Image.new("RGB", (label_width + side * max(len(r) for r in rows), side * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (label, images) in enumerate(zip(labels, rows)):
        draw.text((4, r * side + side // 2 - 6), label[:20], fill="black")
        for c, image in enumerate(images):
            grid.paste(image.resize((side, side), Image.NEAREST), (label_width + c * side, r * side))
    return grid


def _save_png(path: Path, image: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
