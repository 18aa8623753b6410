"""`clipgen compare`: the same prompts, seeds and sample counts for every generator, one report.

Runs are condition-transformer run directories of any kind (language-free, caption-trained,
text-token); beside them stand generators clipgen did not train: folders of images drawn
elsewhere (`--images NAME=DIR`) and local diffusers pipelines (`--diffusers NAME=DIR`). Every one
gets the same metrics. Writes DIR/report.md, DIR/metrics.{csv,json}, DIR/bars.png, side-by-side
grids in DIR/grids/ and every sample in DIR/samples/NAME/. Runs under torchrun (prompt batches are
shared out, statistics gathered).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="+", default=[], help="clipgen run directories to compare")
    parser.add_argument("--images", action="append", default=[], metavar="NAME=DIR",
                        help="a folder of images another tool drew, named as sample.py names its own: {i:04d}_{k}.png "
                             "(i the prompt's 0-based index, k the image); every one the comparison needs must be "
                             "there (repeatable)")
    parser.add_argument("--diffusers", action="append", default=[], metavar="NAME=DIR[;steps=N;guidance=G]",
                        help="a local diffusers text-to-image pipeline (save_pretrained's directory; never "
                             "downloaded), run on the same prompts, seeds and counts; steps default 50, guidance "
                             "7.5; needs pip install 'clipgen[diffusers]' (repeatable)")
    parser.add_argument("--prompts", required=True, help="one prompt per line, or an EasyNLP/MUGE TSV (idx, text, imgbase64)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--real", default="", help="image shards of real images for the Fréchet distances")
    parser.add_argument("--num-images", type=int, default=1, help="samples per prompt and run (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per sampling batch (default 32)")
    parser.add_argument("--clip", default="", metavar="KIND:PATH",
                        help="the CLIP for CLIP score and FD (default: the first run's; another CLIP is a fairer judge)")
    parser.add_argument("--inception", default="", metavar="FILE",
                        help="InceptionV3 weights for FID: torch-fidelity's or pytorch-fid's 2015-12-05 .pth file")
    parser.add_argument("--max-real", type=int, default=10000)
    parser.add_argument("--max-grids", type=int, default=64, help="side-by-side grids for the first N prompts")
    parser.add_argument("--judge", choices=["auto", "shapes", "off"], default="auto",
                        help="shapes-zh attribute accuracy: auto (when every prompt names a shapes-zh shape), shapes, off")
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from clipgen.comparison import CompareJob, run_compare
    from clipgen.comparison.diffusers_pipeline import DiffusersSource
    from clipgen.comparison.generators import ImageFolderSource
    from clipgen.engine.dist import cleanup_distributed, init_distributed
    from clipgen.engine.logging import setup_console_logging
    from clipgen.errors import input_errors_exit
    from clipgen.sampling import check_sampling_flags

    sampling = {"guidance_scale": args.guidance_scale, "top_k": args.top_k, "top_p": args.top_p, "temperature": args.temperature}
    # a SystemExit(2) after one line on stderr, called from Python too (what its callers expect)
    with input_errors_exit("clipgen compare"):
        check_sampling_flags(**sampling)  # before any run is loaded or sampled
        job = CompareJob(
            runs=[Path(r) for r in args.runs], prompts_file=Path(args.prompts), out=Path(args.out), real=args.real,
            num_images=args.num_images, seed=args.seed, batch_size=args.batch_size, clip=args.clip,
            inception=args.inception, max_real=args.max_real, max_grids=args.max_grids, judge=args.judge, sampling=sampling,
            images=[ImageFolderSource.parse(given) for given in args.images],
            diffusers=[DiffusersSource.parse(given) for given in args.diffusers],
        )  # fmt: skip
        info = init_distributed(args.device)
        setup_console_logging(info.is_main)
        try:
            summary = run_compare(job, info)
        finally:
            cleanup_distributed()
    if info.is_main:
        print(json.dumps(summary["metrics"], ensure_ascii=False))
    return 0
