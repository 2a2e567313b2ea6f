"""`dim prepare-comp1k`: composites and annotation files of Composition-1k (see `dimatting.data.prepare`)."""

from __future__ import annotations

import argparse
import os


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare-comp1k",
        description=(
            "Writes bg/merged images, links the fg/alpha/trimap files and writes training_list.json and "
            "test_list.json under --out; the source folders are never modified. Re-running resumes."
        ),
    )
    parser.add_argument("--source", required=True, help="extracted Adobe Deep Matting folder (Training_set, Test_set)")
    parser.add_argument("--coco", help="COCO root holding train2014 or train2017 (training backgrounds)")
    parser.add_argument("--voc", required=True, help="VOCdevkit folder holding VOC2012 (test backgrounds)")
    parser.add_argument("--out", required=True, help="output folder, e.g. data/adobe_composition-1k")
    parser.add_argument("--nproc", type=int, default=min(4, os.cpu_count() or 1), help="worker processes")
    parser.add_argument(
        "--no-composite",
        action="store_true",
        help="do not write training composites (enough for the online-merge config; test is always composited)",
    )
    parser.add_argument("--skip-train", action="store_true", help="prepare the test set only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dimatting.data.prepare import prepare_comp1k

    written = prepare_comp1k(
        args.source,
        args.coco,
        args.voc,
        args.out,
        composite=not args.no_composite,
        nproc=args.nproc,
        skip_train=args.skip_train,
    )
    print(f"done: {written} images written; annotation files in {args.out}")
    return 0
