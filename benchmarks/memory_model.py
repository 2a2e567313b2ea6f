"""Peak memory per pixel of a whole-image prediction, by precision and stage, from an exact model of live tensors.

    python benchmarks/memory_model.py [--size 4096] [--cpu-check 512]

No GPU needed: the prediction path (`Matter._alpha_on_device`: uint8 upload, normalise, pad, forward,
postprocess, uint8 alpha) runs on the meta device under `tests.live_bytes.LiveBytes`, which counts every
tensor from creation to release as eager PyTorch frees them (the same lifetimes the CUDA caching allocator
sees). Not modelled: cuDNN's workspace (none for IEEE fp32 on the H200, ~510 B/px with TF32, unknown for
bf16) and the allocator's rounding; `CUDA_BYTES_PER_PIXEL` in src/dimatting/inference.py adds those. The
former forward (`DIM.predict`, int64 pooling indices kept to the end) is modelled the same way: its
figure can be checked against the H200's measured 13612 MiB at 4096x4096 (850 B/px, benchmarks/results.md).
`--cpu-check S` also runs the fp32 network for real on the CPU at SxS with PyTorch's memory profiler
(allocator's "Total Allocated" peak), as a cross-check of the model on real kernels.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dimatting.inference import CUDA_BYTES_PER_PIXEL, Matter  # noqa: E402
from dimatting.models import build_dim  # noqa: E402
from dimatting.models.lean_forward import LeanForward  # noqa: E402
from tests.live_bytes import LiveBytes  # noqa: E402

META = torch.device("meta")


def pipeline_bytes_per_pixel(size: int, precision: str, refine: bool) -> float:
    """Modelled peak of one whole-image `Matter` pass on a GPU-like device, per pixel of a size x size image."""
    matter = Matter(build_dim(with_refiner=refine), META, precision=precision)
    with torch.inference_mode(), LiveBytes() as live:
        image = torch.empty((size, size, 3), dtype=torch.uint8, device=META)
        trimap = torch.empty((size, size), dtype=torch.uint8, device=META)
        alpha = matter._alpha_on_device(image, trimap, True)
        del image, trimap, alpha
    return live.peak / size**2


def former_forward_bytes_per_pixel(size: int, refine: bool) -> float:
    """The same for the forward before `LeanForward` (preprocess, `DIM.predict`, postprocess; fp32, NCHW)."""
    model = build_dim(with_refiner=refine).eval().to(META)
    with torch.inference_mode(), LiveBytes() as live:
        image = torch.empty((1, 3, size, size), dtype=torch.uint8, device=META)
        trimap = torch.empty((1, 1, size, size), dtype=torch.uint8, device=META)
        raw = model.predict(model.data_preprocessor(image, trimap, bgr=False))
        del image, trimap, raw
    return live.peak / size**2


def cpu_profiled_bytes_per_pixel(size: int) -> tuple[float, float]:
    """(profiled, modelled) peak of the fp32 channels-last `LeanForward` network on the CPU, per pixel."""
    from torch.profiler import ProfilerActivity, profile

    model = build_dim(with_refiner=True).eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 4, size, size).contiguous(memory_format=torch.channels_last)
    network = LeanForward(model)
    with torch.inference_mode():
        network(x)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            del x, network
            x = torch.randn(1, 4, size, size).contiguous(memory_format=torch.channels_last)
            network = LeanForward(model)
            network(x)
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = [e["args"] for e in json.loads(trace.read_text())["traceEvents"] if e.get("name") == "[memory]"]
    start = events[0]["Total Allocated"] - events[0]["Bytes"]
    profiled = (max(e["Total Allocated"] for e in events) - start) / size**2
    meta_model = build_dim(with_refiner=True).eval().to(META).to(memory_format=torch.channels_last)
    with torch.inference_mode(), LiveBytes() as live:
        x = torch.empty((1, 4, size, size), device=META).contiguous(memory_format=torch.channels_last)
        LeanForward(meta_model)(x)
    return profiled, live.peak / size**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--cpu-check", type=int, default=0, metavar="S", help="also profile the CPU at SxS")
    args = parser.parse_args()
    print(f"Modelled peak bytes per pixel at {args.size}x{args.size} (activations only; no cuDNN workspace):\n")
    print("| path | stage 1 | stage 3 | GiB at this size, stage 3 | CUDA_BYTES_PER_PIXEL |")
    print("|---|---|---|---|---|")
    rows = [("former forward, fp32", None)] + [(f"ours, {p}", p) for p in ("fp32", "bf16")]
    for name, precision in rows:
        if precision is None:
            per_pixel = [former_forward_bytes_per_pixel(args.size, refine) for refine in (False, True)]
            budget = "-"
        else:
            per_pixel = [pipeline_bytes_per_pixel(args.size, precision, refine) for refine in (False, True)]
            budget = str(CUDA_BYTES_PER_PIXEL[precision]) + (f" (tf32: {CUDA_BYTES_PER_PIXEL['tf32']})"
                                                              if precision == "fp32" else "")
        gib = per_pixel[1] * args.size**2 / 2**30
        print(f"| {name} | {per_pixel[0]:.0f} | {per_pixel[1]:.0f} | {gib:.2f} | {budget} |", flush=True)
    if args.cpu_check:
        profiled, modelled = cpu_profiled_bytes_per_pixel(args.cpu_check)
        print(f"\nCPU cross-check, fp32 channels-last network at {args.cpu_check}² (stage 3): profiled "
              f"{profiled:.0f} B/px, modelled {modelled:.0f} B/px")


if __name__ == "__main__":
    main()
