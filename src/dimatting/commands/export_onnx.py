"""`dim export-onnx`: write a checkpoint as an ONNX graph for onnxruntime (`dim predict --checkpoint x.onnx`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dimatting.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-onnx",
        description="Export the network (normalised, /32-padded N×4×H×W input -> alpha; dynamic size) to ONNX. "
        "dim predict and dimatting.load_model accept the .onnx file and run it with onnxruntime.",
    )
    parser.add_argument("--checkpoint", required=True,
                        help="DIM checkpoint (.pth or .safetensors): a file, URL or released model name (dim models)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write (.onnx)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.output.suffix != ".onnx":
        raise InputError(f"{args.output}: the output must end in .onnx; rename it")
    from dimatting.inference import load_model
    from dimatting.onnx_export import export_onnx

    matter = load_model(args.checkpoint, device="cpu", channels_last=False)
    export_onnx(matter.model, args.output)
    print(f"wrote {args.output} (stage {'2/3, refined alpha' if matter.refines else '1'})")
    return 0
