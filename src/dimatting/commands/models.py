"""`dim models`: the released DIM checkpoints usable by name, their reference metrics, and which are cached."""

from __future__ import annotations

import argparse

from dimatting.released import RELEASE_URL_ENV, RELEASED

COLUMNS = ("name", "stage", "SAD", "MSE", "GRAD", "CONN", "cached", "url")
FORMATS = {"SAD": ".1f", "MSE": ".3f", "GRAD": ".1f", "CONN": ".1f"}  # as the reference's README prints them


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        description="List the released DIM checkpoints: pass a name to --checkpoint, tools/test.py, load_from "
        "or dimatting.load_model and the file is downloaded once into torch.hub's cache. SAD/MSE/GRAD/CONN "
        f"are the reference's Comp-1k results. ${RELEASE_URL_ENV} replaces the download host by a mirror.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dimatting.hub import cache_dir, cached_file  # imports torch, which only this needs

    rows = [
        (m.name, str(m.stage), *(format(m.metrics[k], fmt) for k, fmt in FORMATS.items()),
         "yes" if cached_file(m.url).is_file() else "no", m.url)
        for m in RELEASED.values()
    ]
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    for row in [COLUMNS, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"\nSAD/MSE/GRAD/CONN: the reference's Comp-1k results (mmagic). Cache: {cache_dir()} "
          "(move it with $TORCH_HOME).")
    return 0
