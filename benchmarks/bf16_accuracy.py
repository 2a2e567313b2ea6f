"""How far the bf16 fast path (and TF32) moves alphas on a trained checkpoint, against IEEE fp32 on the same device.

    python benchmarks/bf16_accuracy.py --checkpoint work_dirs/dim_quickstart/best_SAD_iter_400.pth \\
        --data data/synthetic [--device cuda] [--compile] [--max-images 20] [--out acc.md]

`--data` is a Composition-1k-layout root with `test_list.json` (the quickstart's `data/synthetic`, or a
prepared Comp-1k). Every test image is predicted whole with `--precision fp32` (the reference; on the CPU in
the reference's NCHW layout) and then with `bf16` (and `tf32`, and the compiled bf16 path with --compile,
on CUDA). Reported over all images: mean and max |alpha - fp32 alpha| over the unknown region (the issue's
bound: mean <= 1/255), and the mmagic SAD against the ground truth of each precision with its relative
change (bound: within 0.5%).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_test_set(root: Path, limit: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, RGB image, trimap, GT alpha) of the first `limit` test records."""
    from dimatting.io import read_gray, read_image, read_trimap

    records = json.loads((root / "test_list.json").read_text())[:limit]
    return [(Path(r["merged_path"]).stem, read_image(root / r["merged_path"]), read_trimap(root / r["trimap_path"]),
             read_gray(root / r["alpha_path"])) for r in records]


def compare(alphas: list[np.ndarray], reference: list[np.ndarray], data: list) -> dict[str, float]:
    """Mean/max |Δα| over the unknown pixels of all images, and the mean SAD with its change vs the reference."""
    from dimatting.metrics import sad

    diff = np.concatenate([np.abs(a - r)[t == 128] for a, r, (_, _, t, _) in zip(alphas, reference, data, strict=True)])
    sads = [np.mean([sad(a, g, t) for a, (_, _, t, g) in zip(x, data, strict=True)]) for x in (alphas, reference)]
    return {"mean": float(diff.mean()), "max": float(diff.max()), "sad": float(sads[0]),
            "sad_change": float(sads[0] / sads[1] - 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="Comp-1k-layout root with test_list.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="also the torch.compile'd bf16 path")
    parser.add_argument("--max-images", type=int, default=20)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    from dimatting.inference import load_model
    from dimatting.io import write_text

    data = load_test_set(args.data, args.max_images)
    cuda = args.device.startswith("cuda")
    modes = {"fp32": {"precision": "fp32", "channels_last": None if cuda else False}, "bf16": {"precision": "bf16"}}
    if cuda:
        modes["tf32"] = {"precision": "tf32"}
    if args.compile:
        modes["bf16-compiled"] = {"precision": "bf16", "compile": True}
    results: dict[str, list[np.ndarray]] = {}
    lines = [f"`{args.checkpoint}` on {len(data)} test images of {args.data} ({args.device}):", "",
             "| precision | mean abs d-alpha (unknown) | max | SAD | SAD change | seconds |",
             "|---|---|---|---|---|---|"]
    for mode, options in modes.items():
        matter = load_model(args.checkpoint, args.device, tile_threshold=None, **options)
        tick = time.perf_counter()
        results[mode] = [matter.predict(image, trimap) for _, image, trimap, _ in data]
        seconds = time.perf_counter() - tick
        if mode == "fp32":
            sad_fp32 = compare(results[mode], results[mode], data)["sad"]
            lines.append(f"| fp32 (reference) | - | - | {sad_fp32:.4f} | - | {seconds:.1f} |")
        else:
            c = compare(results[mode], results["fp32"], data)
            lines.append(f"| {mode} | {c['mean']:.2e} ({c['mean'] * 255:.2f}/255) | {c['max']:.3f} | {c['sad']:.4f} | "
                         f"{c['sad_change'] * 100:+.3f}% | {seconds:.1f} |")
        print(lines[-1], flush=True)
        if args.out:  # after every row: a run stopped during the (slow) compiled mode keeps the others
            write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
