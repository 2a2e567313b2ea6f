"""The `dim` command: one entry point, one module per subcommand under `dimatting.commands`.

Each subcommand module exposes `add_parser(subparsers)`, which registers its arguments and sets
`func=run` with `run(args) -> int`. Only the module of the command being run is imported (`dim --help`
lists the commands from the table below without importing any), so start-up pays for no other command's
libraries. Errors meant for people (`DimattingError`) become one line on stderr and exit status 2;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from dimatting.errors import DimattingError

# command -> (module under dimatting.commands, the one-line summary `dim --help` lists)
COMMANDS = {
    "predict": ("predict", "predict alpha mattes with a DIM checkpoint"),
    "evaluate": ("evaluate", "SAD/MSE/GRAD/CONN of predicted alphas against GT alphas"),
    "make-synthetic": ("make_synthetic", "write a synthetic Comp-1k-layout dataset (quickstart, tests)"),
    "prepare-comp1k": ("prepare_comp1k", "build the Composition-1k training/test sets from the Adobe archive, COCO "
                       "and VOC"),
    "export-onnx": ("export_onnx", "export a DIM checkpoint to ONNX"),
    "models": ("models", "list the released DIM checkpoints (usable by name wherever a checkpoint goes)"),
    "serve": ("serve", "a local web page to matte your own photos (paint the trimap, see the alpha, download the "
              "cutout)"),
}


def setup_logging(debug: bool = False) -> None:
    """Send dimatting's notices and warnings to stderr as plain one-line messages."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger("dimatting")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def _chosen(argv: list[str]) -> str | None:
    """The command named in `argv` (its first word that is not an option), if it is one of ours."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


class _Summarised:
    """`subparsers` as a command module sees it: the parser it adds gets the summary from COMMANDS."""

    def __init__(self, subparsers: argparse._SubParsersAction, summary: str) -> None:
        self.subparsers, self.summary = subparsers, summary

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
        return self.subparsers.add_parser(name, help=self.summary, **kwargs)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `dim` parser, with full arguments for the command named in `argv` (None: for every command);
    the other commands are listed by name and summary only."""
    parser = argparse.ArgumentParser(prog="dim", description="Deep Image Matting toolkit (mmagic-compatible).")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True)
    chosen = _chosen(argv) if argv is not None else None
    for command, (module_name, summary) in COMMANDS.items():
        if argv is None or command == chosen:
            module = importlib.import_module(f"dimatting.commands.{module_name}")
            module.add_parser(_Summarised(subparsers, summary))
        else:
            subparsers.add_parser(command, help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `dim`; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
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
