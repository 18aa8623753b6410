"""`clipgen import`: a seed system's released model as a clipgen run directory.

`clipgen import clip-gen`: HFAiLab/clip-gen's VQGAN and GPT (`vqgan_coco.pt`, `gpt_coco.pt`).
`clipgen import easynlp`: an EasyNLP text2image checkpoint directory (pai-painter, ARTIST).
The run directory takes `sample.py --ckpt`, `ClipGenPipeline.from_pretrained`, `clipgen compare`
and `clipgen serve` like any clipgen run. A bad input is one error line, and nothing is written.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    clip_gen = formats.add_parser("clip-gen", help="HFAiLab/clip-gen's vqgan_coco.pt + gpt_coco.pt",
                                  description="HFAiLab/clip-gen's VQGAN and GPT checkpoints as a clipgen run directory")  # fmt: skip
    clip_gen.add_argument("--vqgan", required=True, help="the VQGAN checkpoint (vqgan_coco.pt)")
    clip_gen.add_argument("--gpt", required=True, help="the GPT checkpoint (gpt_coco.pt)")
    clip_gen.add_argument("--gpt-heads", type=int, default=None, metavar="N",
                          help="attention heads, which the weights do not record (default: the released model's: "
                               "16 at width 1024, gpt2_medium; 20 at 1280, gpt2_large)")  # fmt: skip
    clip_gen.add_argument("--clip", default="", metavar="SPEC",
                          help="the CLIP that reads prompts, KIND:PATH[;KEY=VALUE...]: one in OpenAI ViT-B/32's embedding "
                               "space, e.g. 'taiyi:/weights/taiyi-text;image_dir=/weights/clip-vit-b32' (Chinese) or "
                               "'open_clip:/weights/vit-b-32-openai.bin;arch=ViT-B-32-quickgelu' (English)")  # fmt: skip
    clip_gen.add_argument("--out", required=True, help="the run directory to write (must not exist, or be empty)")
    clip_gen.set_defaults(_import=_clip_gen)

    easynlp = formats.add_parser("easynlp", help="an EasyNLP text2image checkpoint directory (pai-painter, ARTIST)",
                                 description="an EasyNLP text2image checkpoint directory as a clipgen text-token run")  # fmt: skip
    easynlp.add_argument("src", metavar="SRC_DIR", help="config.json, pytorch_model.bin and vocab.txt")
    easynlp.add_argument("--entity2vec", default=None, metavar="PATH", help="ARTIST: its entity vectors (entity2vec.pt)")
    easynlp.add_argument("--entity2id", default=None, metavar="PATH", help="ARTIST: its entity list (entity2id.txt)")
    easynlp.add_argument("--no-knowledge", action="store_true",
                         help="ARTIST: import without its entity knowledge (its ent_emb weights are left out)")
    easynlp.add_argument("--out", required=True, help="the run directory to write (must not exist, or be empty)")
    easynlp.set_defaults(_import=_easynlp)


def _clip_gen(args: argparse.Namespace):
    from clipgen.encoders import parse_clip_spec
    from clipgen.formats.imports import import_clip_gen_run

    if args.clip:  # only recorded in condition.yaml, so parsed here: a malformed spec or kind fails now, not at sampling
        try:
            parse_clip_spec(args.clip)
        except ValueError as err:
            raise ValueError(f"--clip {args.clip}: {err}") from None

    return import_clip_gen_run(args.vqgan, args.gpt, args.out, heads=args.gpt_heads, clip=args.clip)


def _easynlp(args: argparse.Namespace):
    from clipgen.formats.imports import import_easynlp_run

    return import_easynlp_run(args.src, args.out, args.entity2vec, args.entity2id, knowledge=not args.no_knowledge)


def run(args: argparse.Namespace) -> int:
    import sys

    out = args._import(args)
    print(f"wrote {out}")
    if args.format == "clip-gen" and not args.clip:
        print(f"note: no --clip given: name the CLIP that reads prompts as clip: in {out}/condition.yaml "
              "before sampling from prompts", file=sys.stderr)  # fmt: skip
    return 0
