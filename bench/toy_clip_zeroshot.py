"""Zero-shot attribute accuracy of a CLIP on shapes-zh: each image against all 576 full captions.

    python bench/toy_clip_zeroshot.py --clip toy:runs/toy/model --data data/shapes-zh/heldout

The caption "{位置}有一个{大小}{颜色}{形状}" (canonical words) closest to the image names four
attributes; each is scored against the image's labels separately. It shows which attributes a
CLIP's two towers agree on before any generator depends on them.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipgen.data.loader import ImageDataConfig, make_image_loader  # noqa: E402
from clipgen.data.shapes import COLOURS, POSITIONS, SHAPES, SIZES  # noqa: E402
from clipgen.encoders import load_clip  # noqa: E402
from clipgen.images import to_pil  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", required=True, metavar="KIND:PATH")
    parser.add_argument("--data", required=True, help="shapes-zh shards")
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args()
    kind, _, path = args.clip.partition(":")
    encoder = load_clip(kind, path)
    combos = list(itertools.product(COLOURS, SHAPES, SIZES, POSITIONS))
    texts = [f"{p.canonical}有一个{s.canonical}{c.canonical}{sh.canonical}" for c, sh, s, p in combos]
    text_emb = encoder.encode_text(texts)
    loader = make_image_loader(ImageDataConfig(shards=args.data), batch_size=args.images, seed=0, train=False)
    batch = next(iter(loader))
    best = (encoder.encode_image(to_pil(batch["image"])) @ text_emb.t()).argmax(dim=1).tolist()
    names = ("colour", "shape", "size", "position")
    hits = dict.fromkeys(names, 0)
    for meta, choice in zip(batch["meta"], best):
        for name, value in zip(names, combos[choice]):
            hits[name] += meta["labels"][name] == value.canonical
    n = len(best)
    print(f"# {args.clip} on {n} images of {args.data}: zero-shot accuracy among {len(texts)} captions")
    print(" ".join(f"{name} {100 * hits[name] / n:.1f}%" for name in names))


if __name__ == "__main__":
    main()
