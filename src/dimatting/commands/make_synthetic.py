"""`dim make-synthetic`: write a procedural Comp-1k-layout dataset (see `dimatting.data.synthetic`)."""

from __future__ import annotations

import argparse
import os
import time

from dimatting.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-synthetic",
        description="Write fg/alpha/bg/merged (+ test trimaps) and training_list.json/test_list.json to --out.",
    )
    parser.add_argument("--out", required=True, help="output folder (the dataset's data_root)")
    parser.add_argument("--n-train", type=int, required=True, help="number of training samples")
    parser.add_argument("--n-test", type=int, required=True, help="number of test samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical files)")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 320), metavar=("H", "W"), help="image size")
    parser.add_argument(
        "--nproc", type=int, default=min(4, os.cpu_count() or 1), help="worker processes (output is identical)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dimatting.data.synthetic import make_synthetic

    if args.n_train < 0 or args.n_test < 0:
        raise InputError("--n-train and --n-test must be >= 0")
    if min(args.size) < 32:
        raise InputError(f"--size {args.size[0]} {args.size[1]}: each side must be at least 32")
    start = time.perf_counter()
    out = make_synthetic(args.out, args.n_train, args.n_test, seed=args.seed, size=tuple(args.size), nproc=args.nproc)
    print(f"wrote {args.n_train} train + {args.n_test} test samples to {out} in {time.perf_counter() - start:.1f} s")
    return 0
