"""What a training run reports: a tqdm bar, TensorBoard scalars and images, a JSONL log.

Only rank 0 writes. `metrics.jsonl` keeps every logged scalar with its step, so curves can be
plotted later without TensorBoard.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import torch

from clipgen.images import to_uint8

log = logging.getLogger("clipgen")


def setup_console_logging(is_main: bool) -> None:
    level = logging.INFO if is_main else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)


def image_grid(images: torch.Tensor, columns: int | None = None, pad: int = 2) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] (or uint8) -> one uint8 [3, rows*(H+pad)+pad, cols*(W+pad)+pad] grid."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.full((c, rows * (h + pad) + pad, columns * (w + pad) + pad), 255, dtype=torch.uint8)
    pixels = to_uint8(images)
    for i in range(n):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = pixels[i]
    return grid


def save_png(chw_uint8: torch.Tensor, path: str | Path) -> None:
    from PIL import Image

    Image.fromarray(chw_uint8.permute(1, 2, 0).numpy()).save(path)


def _drop_rows_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class RunLogger:
    def __init__(self, run_dir: str | Path, enabled: bool, total_steps: int, start_step: int = 0):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._tb = None
        self._bar = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self._tb = SummaryWriter(str(self.run_dir / "tb"))
        metrics = self.run_dir / "metrics.jsonl"
        _drop_rows_after(metrics, start_step)  # a resumed run logs those steps again
        self._jsonl = open(metrics, "a", encoding="utf-8")
        self._bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, desc="train", file=sys.stderr)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        clean = {f"{prefix}/{k}": float(v) for k, v in values.items()}
        for key, value in clean.items():
            self._tb.add_scalar(key, value, step)
        self._jsonl.write(json.dumps({"step": step, **clean}) + "\n")
        self._jsonl.flush()

    def progress(self, steps: int, postfix: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.update(steps)
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def images(self, step: int, tag: str, images: torch.Tensor) -> None:
        """Log a grid to TensorBoard and as `samples/{tag}_{step}.png`."""
        if not self.enabled:
            return
        grid = image_grid(images)
        self._tb.add_image(tag, grid, step)
        out = self.run_dir / "samples"
        out.mkdir(exist_ok=True)
        save_png(grid, out / f"{tag.replace('/', '_')}_{step:08d}.png")

    def close(self) -> None:
        if not self.enabled:
            return
        self._bar.close()
        self._tb.close()
        self._jsonl.close()
