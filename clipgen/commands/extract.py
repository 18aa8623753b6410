"""`clipgen extract`: VQGAN codes + CLIP image embeddings of image shards, into token shards."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vqgan", required=True, help="a VQGAN run dir (its model/) or a save_pretrained dir")
    parser.add_argument("--clip", required=True, metavar="KIND:PATH[;KEY=VALUE...]",
                        help="e.g. chinese-clip:/weights/cn-clip, toy:runs/demo/toy-clip/model or "
                        "taiyi:/weights/taiyi-text;image_dir=/weights/clip-vit-b32")
    parser.add_argument("--data", required=True, help="image shards: directory, brace pattern or list")
    parser.add_argument("--out", required=True, help="output directory for token shards")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--caption-embeddings", action="store_true",
                        help="also store the CLIP text embedding of each sample's caption (caption-trained baseline)")
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from clipgen.engine.dist import cleanup_distributed, init_distributed
    from clipgen.engine.logging import setup_console_logging
    from clipgen.extract import ExtractJob, run_extract
    from clipgen.models.vqgan import vqgan_model_dir

    vqgan_dir = vqgan_model_dir(args.vqgan)
    info = init_distributed(args.device)
    setup_console_logging(info.is_main)
    try:
        summary = run_extract(ExtractJob(vqgan_dir, args.clip, args.data, Path(args.out), args.batch_size, args.caption_embeddings), info)
    finally:
        cleanup_distributed()
    if info.is_main:
        print(json.dumps({k: v for k, v in summary.items() if k != "shards"}, ensure_ascii=False))
    return 0
