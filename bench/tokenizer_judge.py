"""How well a VQGAN's tokens suit the condition transformer, on shapes-zh held-out images.

Prints the judge's attribute accuracy on reconstructions (the ceiling for anything generated
through this tokenizer), PSNR, and how predictable the tokens are: the entropy of the code
distribution and how many distinct codes the always-background top-left token takes.

    python bench/tokenizer_judge.py --vqgan runs/demo/vqgan --heldout runs/demo/data/heldout
"""

from __future__ import annotations

import argparse
import collections
import json

import torch

from clipgen.demo.evaluate import heldout_images, score_reconstructions
from clipgen.models.vqgan import VQGAN, vqgan_model_dir


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vqgan", required=True)
    parser.add_argument("--heldout", required=True, help="shapes-zh image shards with labels")
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()

    vqgan = VQGAN.from_pretrained(vqgan_model_dir(args.vqgan)).eval()
    images, labels = heldout_images(args.heldout, args.images)
    score, batches = score_reconstructions(vqgan, images, labels)
    pixels = torch.cat([b["pixels"] for b in batches])
    mse = (torch.cat([b["reconstructions"] for b in batches]).clamp(-1, 1) - pixels).pow(2).mean(dim=(1, 2, 3))
    codes = torch.cat([b["indices"] for b in batches]).flatten(1)
    counts = torch.bincount(codes.flatten(), minlength=vqgan.config.n_embed).double()
    probs = counts[counts > 0] / counts.sum()
    print(json.dumps({
        "vqgan": args.vqgan,
        "images": len(images),
        "judge_on_reconstructions_pct": {k: round(v, 1) for k, v in score.accuracy().items()},
        "psnr_db": round(float((10 * torch.log10(4 / mse)).mean()), 2),
        "codes_used": int((counts > 0).sum()),
        "code_entropy_nats": round(float(-(probs * probs.log()).sum()), 2),
        "top_left_token_distinct_codes": len(collections.Counter(codes[:, 0].tolist())),
    }, ensure_ascii=False))  # fmt: skip


if __name__ == "__main__":
    main()
