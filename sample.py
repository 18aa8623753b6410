#!/usr/bin/env python
"""Draw images for Chinese prompts from a condition-transformer run directory.

    python sample.py --ckpt RUN_DIR (--prompt TEXT | --prompts-file FILE) [--num-images K] [--seed S]
                     [--out DIR] [--guidance-scale G] [--top-k K] [--top-p P] [--temperature T] [--no-kv-cache]

Writes DIR/{i:04d}_{k}.png (i: the prompt's 0-based line, k: the sample) and DIR/grid.png.
Every sampling setting not given is the run's own (RUN_DIR/sampling.yaml: the settings its
evaluation used), and the settings used are printed.
"""

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from clipgen.engine.allocator import keep_freed_memory
from clipgen.errors import input_errors_exit, read_text_file


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sample.py", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a train_gpt.py run directory")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one prompt")
    source.add_argument("--prompts-file", help="a UTF-8 file, one prompt per line")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default="samples")
    run_default = " (default: the run's own, from its sampling.yaml)"
    parser.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance, 1: off" + run_default)
    parser.add_argument("--top-k", type=int, default=None, help="0 keeps every token" + run_default)
    parser.add_argument("--top-p", type=float, default=None, help="1 keeps every token" + run_default)
    parser.add_argument("--temperature", type=float, default=None, help="0 is greedy" + run_default)
    parser.add_argument("--no-kv-cache", action="store_true", help="re-run the whole sequence every step (slow)")
    parser.add_argument("--candidates", type=int, default=None, metavar="N",
                        help="draw N images per prompt and keep the --num-images that CLIP ranks best; 0: none" + run_default)
    parser.add_argument("--rerank-clip", default=None, metavar="KIND:PATH",
                        help="the CLIP that ranks candidates, KIND:PATH[;KEY=VALUE...] (default: the one the run was conditioned on)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as every clipgen command does (clipgen/engine/allocator.py)
    with input_errors_exit(parser.prog):  # a bad input is one line and status 2; a bug, a traceback
        return sample(args)


def sample(args: argparse.Namespace) -> int:
    from clipgen.engine.logging import image_grid, save_png
    from clipgen.images import from_pil
    from clipgen.pipeline import ClipGenPipeline, check_prompts
    from clipgen.sampling import check_sampling_flags

    # the inputs are checked before the run is loaded (a CLIP can take a while)
    if args.prompt is not None:
        prompts = [args.prompt]
    else:
        prompts = read_text_file(args.prompts_file, "--prompts-file").splitlines()
    check_prompts(prompts)
    check_sampling_flags(guidance_scale=args.guidance_scale, top_k=args.top_k, top_p=args.top_p,
                         temperature=args.temperature, candidates=args.candidates)  # fmt: skip
    pipe = ClipGenPipeline.from_pretrained(args.ckpt, device=args.device)
    if args.rerank_clip:
        from clipgen.encoders import load_clip_spec

        pipe.reranker = load_clip_spec(args.rerank_clip, device=pipe.device)
    request = pipe.request(prompts, num_images=args.num_images, seed=args.seed, guidance_scale=args.guidance_scale,
                           top_k=args.top_k, top_p=args.top_p, temperature=args.temperature, candidates=args.candidates)
    print(f"seed {request.seed}; " + ", ".join(f"{k} {v}" for k, v in asdict(request.settings).items()))
    images = pipe.run_requests([request], kv_cache=not args.no_kv_cache)[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(images):
        for k, image in enumerate(row):
            image.save(out / f"{i:04d}_{k}.png")
    flat = [image for row in images for image in row]
    save_png(image_grid(from_pil(flat), columns=args.num_images), out / "grid.png")
    print(f"wrote {len(flat)} images and grid.png to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
