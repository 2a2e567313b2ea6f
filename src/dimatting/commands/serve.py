"""`dim serve`: a local web page (and HTTP API) to matte your own photos with a DIM checkpoint.

This module only declares the arguments: the server (Starlette, uvicorn, torch) is imported when the
command runs, so `dim --help` stays fast and works without the `serve` extra installed.
"""

from __future__ import annotations

import argparse

from dimatting.errors import DimattingError

# the `serve` extra's modules; any other missing module is a real error, not a missing extra
SERVE_MODULES = ("starlette", "uvicorn", "python_multipart")


def _positive(kind: type) -> object:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: give a number greater than 0") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text}: give a number greater than 0")
        return value

    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        description="Serve a web page and an HTTP API (GET /api/health, POST /api/predict) that predict alpha "
        "mattes with a DIM checkpoint. Everything is served by the package; nothing is fetched from the internet.",
    )
    parser.add_argument("--checkpoint", required=True,
                        help="DIM checkpoint: .pth, .safetensors, or .onnx from dim export-onnx")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only); 0.0.0.0 opens the "
                        "server to your network, without any login")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    parser.add_argument("--precision", default="fp32",
                        help="fp32 (default), tf32 (CUDA) or bf16, as for dim predict (docs/predict.md)")
    parser.add_argument("--max-upload-mb", type=_positive(float), default=100, metavar="MIB",
                        help="largest request body in MiB (default 100); larger uploads get 413")
    parser.add_argument("--max-pixels", type=_positive(int), default=64_000_000,
                        help="largest image in pixels (default 64000000), read from the file header before "
                        "decoding; larger images get 413")
    parser.add_argument("--queue-size", type=int, default=4,
                        help="predictions that may wait while one runs (default 4); more get 503")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.queue_size < 0:
        raise DimattingError(f"--queue-size {args.queue_size}: give 0 or more")
    try:
        from dimatting.serve.app import Settings
        from dimatting.serve.server import serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVE_MODULES:
            raise
        raise DimattingError(
            f'dim serve needs the web server packages ({exc.name} is missing): pip install "dimatting[serve]"'
        ) from None
    settings = Settings(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
                        queue_size=args.queue_size)
    serve(args.checkpoint, args.host, args.port, args.device, args.precision, settings)
    return 0
