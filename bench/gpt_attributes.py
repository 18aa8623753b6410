"""Attribute accuracy of a condition-transformer run on shapes-zh, for several sampling settings.

For each setting: from Chinese prompts naming all four attributes (through the run's CLIP text
tower and bridge), optionally with CLIP re-ranking of N candidates, and from held-out image
embeddings (the no-gap reference). Settings are GUIDANCE,TOP_K,TEMPERATURE,CANDIDATES.
`--retrieval-k K` changes how many training images a retrieval-bridge run averages per prompt.

    python bench/gpt_attributes.py --run runs/demo/language-free --heldout runs/demo/data/heldout \
        --settings 1.5,1,1,1 1.5,5,1,8
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from clipgen.data.shapes import full_prompts
from clipgen.demo.evaluate import heldout_images
from clipgen.eval.shapes_eval import judge_image_conditioned, judge_prompts
from clipgen.pipeline import ClipGenPipeline


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--heldout", required=True)
    parser.add_argument("--prompts", type=int, default=576)
    parser.add_argument("--settings", nargs="+", default=["1.5,1,1,1"])
    parser.add_argument("--retrieval-k", type=int, default=0, help="a retrieval-bridge run: average this many images instead")
    args = parser.parse_args()

    pipe = ClipGenPipeline.from_pretrained(args.run)
    if args.retrieval_k:
        if pipe.bridge.config.bridge != "retrieval":
            parser.error(f"--retrieval-k needs a retrieval-bridge run; {args.run} uses {pipe.bridge.config.bridge}")
        pipe.bridge.config.retrieval_k = args.retrieval_k
    prompts = [text for text, _ in full_prompts(args.prompts, seed=1)]
    images, labels = heldout_images(args.heldout, args.prompts)
    for setting in args.settings:
        guidance, top_k, temperature, candidates = setting.split(",")
        sampling = dict(guidance_scale=float(guidance), top_k=int(top_k), temperature=float(temperature))
        start = time.time()
        text = judge_prompts(pipe, prompts, candidates=int(candidates), **sampling)[0].accuracy()
        seconds = time.time() - start
        image = judge_image_conditioned(pipe, images, labels, **sampling).accuracy() if candidates == "1" else None
        print(json.dumps({"setting": setting, "text_pct": {k: round(v, 1) for k, v in text.items()},
                          "image_pct": image and {k: round(v, 1) for k, v in image.items()},
                          "text_seconds": round(seconds, 1)}, ensure_ascii=False))  # fmt: skip


if __name__ == "__main__":
    main()
