"""`clipgen lpips-weights`: build the LPIPS weights file from two local downloads."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vgg16", required=True, help="torchvision's ImageNet VGG16 state_dict (vgg16-397923af.pth)")
    parser.add_argument("--lin", required=True, help="the lpips package's linear heads (weights/v0.1/vgg.pth)")
    parser.add_argument("--out", required=True, help="output .safetensors file")


def run(args: argparse.Namespace) -> int:
    from clipgen.errors import require_file
    from clipgen.models.lpips import convert_lpips_weights

    convert_lpips_weights(require_file(args.vgg16, "--vgg16"), require_file(args.lin, "--lin"), args.out)
    print(f"wrote {args.out}")
    return 0
