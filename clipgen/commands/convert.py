"""`clipgen convert`: turn a folder of images, an EasyNLP/MUGE TSV or FFRecord files into shards.

Exit status: 0 when shards were written (bad items skipped and reported are not an error);
1 when SRC is missing or nothing in it was readable; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys

SOURCE_KINDS = ("folder", "tsv", "ffrecord")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=SOURCE_KINDS,
                        help="folder: images below a directory; tsv: lines 'idx<TAB>text<TAB>imgbase64'; "
                             "ffrecord: HFAiLab FFRecord files")
    parser.add_argument("src", metavar="SRC", help="the folder, or a file / directory of *.tsv or *.ffr files")
    parser.add_argument("--out", required=True, help="output directory for shard-*.tar and manifest.json")
    parser.add_argument("--shard-size", type=int, default=1000, help="images per shard (default 1000)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="ffrecord only: unpickle payloads that are Python pickles (HFAiLab's examples "
                             "store pickle.dumps((image, label))). Unpickling runs code from the file: "
                             "use only for files you trust")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing shard set in --out")


def _error(message: str, status: int) -> int:
    print(f"clipgen convert: error: {message}", file=sys.stderr)
    return status


def run(args: argparse.Namespace) -> int:
    from clipgen.data.convert import convert_source, format_summary

    if args.trust_pickle and args.kind != "ffrecord":
        return _error("--trust-pickle applies only to ffrecord sources", 2)
    if args.shard_size < 1:
        return _error(f"--shard-size must be at least 1, got {args.shard_size}", 2)
    try:
        manifest = convert_source(args.kind, args.src, args.out, shard_size=args.shard_size,
                                  trust_pickle=args.trust_pickle, overwrite=args.overwrite,
                                  progress=sys.stderr.isatty())
    except (FileNotFoundError, NotADirectoryError, FileExistsError) as err:
        return _error(str(err), 1)
    print(format_summary(manifest, args.out))
    if manifest["written"] == 0:
        found = manifest["skipped"]
        what = f"none of its {found} item(s) could be read" if found else "it holds no images"
        return _error(f"nothing converted from {args.src}: {what}", 1)
    return 0
