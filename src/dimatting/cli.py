"""The `dim` command: one entry point, one module per subcommand under `dimatting.commands`.

Each subcommand module exposes `add_parser(subparsers)`, which registers its arguments and sets
`func=run` with `run(args) -> int`. Errors meant for people (`DimattingError`) become one line on stderr
and exit status 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from dimatting.errors import DimattingError

SUBCOMMANDS = ("predict", "evaluate", "make_synthetic", "prepare_comp1k", "export_onnx", "models", "serve")


def setup_logging(debug: bool = False) -> None:
    """Send dimatting's notices and warnings to stderr as plain one-line messages."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger("dimatting")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dim", description="Deep Image Matting toolkit (mmagic-compatible).")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"dimatting.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"dimatting.commands.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `dim`; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.debug)
    try:
        return int(args.func(args) or 0)
    except DimattingError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
