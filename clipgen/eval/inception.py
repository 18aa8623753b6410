"""The FID network: InceptionV3 with the 2015-12-05 TensorFlow weights, from a local file only.

Two ports of those weights are in use: torch-fidelity's `weights-inception-2015-12-05-6726825d.pth`
(what torchmetrics loads) and pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`. Both hold the
same state-dict layout, which torch-fidelity's FeatureExtractorInceptionV3 loads, so clipgen runs
that class (its TF1-exact resize and input scaling) on either, and names the file it used in every
metric it reports. Figures are comparable with published FIDs only with one of these two files.

torch-fidelity unpickles its weights file in full; clipgen first reads the file with
`torch.load(weights_only=True)`, which refuses anything but tensors, and hands torch-fidelity a
copy of those tensors only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

KNOWN_FILES = {
    "weights-inception-2015-12-05-6726825d.pth": "torch-fidelity",
    "pt_inception-2015-12-05-6726825d.pth": "pytorch-fid",
}


def weights_origin(path: Path) -> str:
    return KNOWN_FILES.get(path.name, "unrecognised file")


class InceptionFeatures:
    """2048-d pool features of PIL images, batched, on `device`."""

    def __init__(self, weights: str | Path, device: str | torch.device = "cpu", batch_size: int = 64):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(
                f"Inception weights not found at {weights}: put torch-fidelity's weights-inception-2015-12-05-6726825d.pth "
                "or pytorch-fid's pt_inception-2015-12-05-6726825d.pth there. clipgen never downloads weights."
            )
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as err:  # pickled code, a truncated file, not a torch file at all
            raise ValueError(f"{weights} is not a plain tensor state dict of InceptionV3: {err}") from err
        with tempfile.TemporaryDirectory() as tmp:
            checked = Path(tmp) / "inception.pth"
            torch.save(state, checked)
            try:
                self.model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(checked))
            except RuntimeError as err:  # missing or unexpected keys, wrong shapes
                raise ValueError(f"{weights} does not fit InceptionV3: {err}") from err
        self.model.to(device)
        self.device, self.batch_size = torch.device(device), batch_size
        self.name = f"inception ({weights_origin(weights)}: {weights.name})"

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([np.asarray(image.convert("RGB")) for image in images[start : start + self.batch_size]])
            uint8 = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(self.device)
            chunks.append(self.model(uint8)[0].float().cpu())
        return torch.cat(chunks) if chunks else torch.empty(0, 2048)
