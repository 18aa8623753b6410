"""A CLIP's own image preprocessing, as differentiable tensor operations.

Every CLIP resizes, crops and normalises an image in its own way before its image tower; the PIL
paths of the encoders do it on uint8 images through the CLIP's own processor. A loss on the CLIP
embedding of generated pixels (train/clip_loss.py) needs the same steps on a float tensor, with
gradients flowing back to the pixels. `PixelPreprocess` holds the steps, read from the CLIP's own
processor settings (`from_hf_processor`, `from_torchvision`), so the two paths cannot drift apart.

The tensor path is close to the PIL path, not identical: the PIL path rounds to uint8 before (the
image itself) and after its resize, and clamps the overshoot of bicubic filters to [0, 255];
the tensor path keeps floats throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# PIL's filter names -> the torch interpolation that does the same; BOX averages each output
# pixel's footprint, which is what torch's "area" does
_PIL_FILTERS = {"NEAREST": "nearest", "BILINEAR": "bilinear", "BICUBIC": "bicubic", "BOX": "area"}


@dataclass(frozen=True)
class PixelPreprocess:
    """[B, 3, H, W] pixels in [-1, 1] -> the normalised input of a CLIP image tower."""

    resize: int | tuple[int, int] | None  # an int sets the shortest edge (aspect kept); (h, w) squashes; None: as is
    interpolation: str  # "bicubic", "bilinear", "nearest" or "area" (PIL's box filter)
    antialias: bool  # low-pass before downsampling, as PIL and torchvision's antialiased resize do
    crop: tuple[int, int] | None  # a centre crop (h, w) after the resize
    mean: tuple[float, float, float]  # per channel, on the [0, 1] scale
    std: tuple[float, float, float]

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels + 1) / 2  # [-1, 1] -> [0, 1], what the processors' uint8 / 255 gives
        if self.resize is not None:
            x = self._resized(x)
        from torchvision.transforms.v2.functional import center_crop, normalize

        if self.crop is not None:
            x = center_crop(x, list(self.crop))
        return normalize(x, list(self.mean), list(self.std))  # out of place: autograd needs the input unchanged

    def _resized(self, x: torch.Tensor) -> torch.Tensor:
        size = self._output_size(x.shape[-2:])
        if size == tuple(x.shape[-2:]):
            return x
        if self.interpolation == "area":
            return F.interpolate(x, size=size, mode="area")
        align = False if self.interpolation in ("bilinear", "bicubic") else None
        antialias = self.antialias and self.interpolation in ("bilinear", "bicubic")
        return F.interpolate(x, size=size, mode=self.interpolation, align_corners=align, antialias=antialias)

    def _output_size(self, hw: torch.Size) -> tuple[int, int]:
        if not isinstance(self.resize, int):
            return tuple(self.resize)
        h, w = int(hw[0]), int(hw[1])
        short, long = min(h, w), max(h, w)
        new_long = int(self.resize * long / short)  # as torchvision and transformers round it
        return (self.resize, new_long) if h <= w else (new_long, self.resize)

    @classmethod
    def from_hf_processor(cls, processor) -> "PixelPreprocess":
        """The steps of a transformers image processor (CLIPImageProcessor, ChineseCLIPImageProcessor)."""
        from PIL import Image

        if processor.do_rescale and abs(processor.rescale_factor - 1 / 255) > 1e-9:
            raise ValueError(f"image processor rescales by {processor.rescale_factor}, not 1/255: no tensor path for it")
        size, crop = processor.size, processor.crop_size
        if not processor.do_resize:
            resize = None
        elif size.get("shortest_edge") and not size.get("longest_edge"):
            resize = int(size["shortest_edge"])
        elif size.get("height") and size.get("width"):
            resize = (int(size["height"]), int(size["width"]))
        else:
            raise ValueError(f"image processor resizes to {size}: the tensor path takes shortest_edge or height/width")
        resample = processor.resample
        name = resample.name if hasattr(resample, "name") else Image.Resampling(resample).name
        if name not in _PIL_FILTERS:
            raise ValueError(f"image processor resamples with {name}: no tensor path for it")
        normalise = processor.do_normalize
        return cls(
            resize=resize,
            interpolation=_PIL_FILTERS[name],
            antialias=True,  # transformers' torchvision backend resizes with antialias=True
            crop=(int(crop["height"]), int(crop["width"])) if processor.do_center_crop else None,
            mean=tuple(processor.image_mean) if normalise else (0.0, 0.0, 0.0),
            std=tuple(processor.image_std) if normalise else (1.0, 1.0, 1.0),
        )

    @classmethod
    def from_torchvision(cls, transform) -> "PixelPreprocess":
        """The steps of a torchvision Compose as open_clip builds one: Resize, CenterCrop, Normalize
        (its mode conversion and to-tensor steps are what the tensor path starts from)."""
        from torchvision import transforms as T

        resize, interpolation, antialias, crop, mean, std = None, "bilinear", True, None, (0.0,) * 3, (1.0,) * 3
        for step in transform.transforms:
            if isinstance(step, T.Resize):
                if step.max_size is not None:
                    raise ValueError("a Resize with max_size has no tensor path")
                size = step.size
                resize = size if isinstance(size, int) else (size[0], size[0]) if len(size) == 1 else tuple(size)
                interpolation = step.interpolation.value  # "bicubic", "bilinear", "nearest"
                antialias = bool(step.antialias) if step.antialias is not None else True
            elif isinstance(step, T.CenterCrop):
                crop = tuple(step.size)
            elif isinstance(step, T.Normalize):
                mean, std = tuple(step.mean), tuple(step.std)
            elif type(step).__name__ not in ("MaybeConvertMode", "MaybeToTensor", "ToTensor") and not _is_rgb_conversion(step):
                raise ValueError(f"the CLIP's preprocessing has a step the tensor path cannot do: {step!r}")
        if interpolation not in ("bicubic", "bilinear", "nearest"):
            raise ValueError(f"the CLIP resizes with {interpolation}: no tensor path for it")
        return cls(resize=resize, interpolation=interpolation, antialias=antialias, crop=crop, mean=mean, std=std)


def _is_rgb_conversion(step) -> bool:
    """open_clip's older releases convert to RGB with a plain function (`_convert_to_rgb`)."""
    return getattr(step, "__name__", "") == "_convert_to_rgb"
