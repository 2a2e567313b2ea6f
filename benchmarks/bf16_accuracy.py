"""How far the bf16 fast path (and TF32) moves alphas on a trained checkpoint, against IEEE fp32 on the same device.

    python benchmarks/bf16_accuracy.py --checkpoint work_dirs/dim_quickstart/best_SAD_iter_400.pth \\
        --data data/synthetic [--device cuda] [--compile] [--max-images 20] [--budget-s 60] [--out acc.md]

`--data` is a Composition-1k-layout root with `test_list.json` (the quickstart's `data/synthetic`, or a
prepared Comp-1k). Every test image is predicted whole with `--precision fp32` (the reference; on the CPU in
the reference's NCHW layout) and then with `bf16` (and `tf32`, and the compiled bf16 path with --compile,
on CUDA). Reported over all images: mean and max |alpha - fp32 alpha| over the unknown region (the issue's
bound: mean <= 1/255), and the mmagic SAD against the ground truth of each precision with its relative
change (bound: within 0.5%).

On a lent GPU this runs under a hard time limit: with `--budget-s` a mode that cannot start with MIN_START_S left is
listed as skipped and one still running at the budget's end (or at a SIGTERM) is stopped, so the script ends by
itself. A mode that fails prints its error and the others still run. --out is rewritten (atomically) before and
after every mode and ends in a status line (completed, or cut short with what did not run): a run killed at any
moment does not look complete.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from budget import Budget, Report, describe, hard_stop  # noqa: E402

# seconds of budget a mode needs left to start: the model's load and 20 images; compiling costs tens of seconds
MIN_START_S = {"eager": 10, "compiled": 60}


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
    parser.add_argument("--budget-s", type=float, default=None,
                        help="modes that cannot start this many s after the start are skipped, a running one "
                             "stopped (default: no limit)")
    parser.add_argument("--out", type=Path, help="also write the markdown table here (rewritten after every mode)")
    args = parser.parse_args()
    budget = Budget(math.inf if args.budget_s is None else args.budget_s)  # the outer limit counts imports too
    from dimatting.inference import load_model

    data = load_test_set(args.data, args.max_images)
    cuda = args.device.startswith("cuda")
    modes = {"fp32": {"precision": "fp32", "channels_last": None if cuda else False}, "bf16": {"precision": "bf16"}}
    if cuda:
        modes["tf32"] = {"precision": "tf32"}
    if args.compile:
        modes["bf16-compiled"] = {"precision": "bf16", "compile": True}
    results: dict[str, list[np.ndarray]] = {}
    report = Report(args.out, [f"`{args.checkpoint}` on {len(data)} test images of {args.data} ({args.device}):", "",
                               "| precision | mean abs d-alpha (unknown) | max | SAD | SAD change | seconds |",
                               "|---|---|---|---|---|---|"])
    report.plan(list(modes))
    with hard_stop(report, None if args.budget_s is None else budget.left()):
        for mode, options in modes.items():
            name = "fp32 (reference)" if mode == "fp32" else mode
            need = MIN_START_S["compiled" if options.get("compile") else "eager"]
            if skip := budget.shortfall(need):
                report.row(mode, f"| {name} | {skip} | | | | |", skipped=True)
                continue
            if mode != "fp32" and "fp32" not in results:
                report.row(mode, f"| {name} | not run: no fp32 reference (it did not run) | | | | |")
                continue
            report.begin(mode)
            try:  # one failing mode must not stop the others
                matter = load_model(args.checkpoint, args.device, tile_threshold=None, **options)
                tick = time.perf_counter()
                alphas = [matter.predict(image, trimap) for _, image, trimap, _ in data]
                seconds = time.perf_counter() - tick
                if mode == "fp32":
                    sad_fp32 = compare(alphas, alphas, data)["sad"]
                    line = f"| {name} | - | - | {sad_fp32:.4f} | - | {seconds:.1f} |"
                else:
                    c = compare(alphas, results["fp32"], data)
                    line = (f"| {name} | {c['mean']:.2e} ({c['mean'] * 255:.2f}/255) | {c['max']:.3f} | "
                            f"{c['sad']:.4f} | {c['sad_change'] * 100:+.3f}% | {seconds:.1f} |")
                results[mode] = alphas
            except Exception as exc:
                traceback.print_exc()
                line = f"| {name} | failed: {describe(exc)} | | | | |"
            report.row(mode, line)


if __name__ == "__main__":
    main()
