"""Benchmark `dim predict` on the CPU against a faithful fp32 port of the reference path, in the same run.

    python benchmarks/bench_predict.py [--sizes 640 1024 2048 4096] [--runs 3] [--threads 2] [--write]

Inputs: the golden GT05 sample resized to SxS (image INTER_LINEAR, trimap INTER_NEAREST), as in
../shared/reference/peer-timings.md; weights: the golden deterministic stage-3 weights (speed does not
depend on weight values). Each measurement runs in its own process so its peak RSS is its own:
- warm: model loaded once, then load PNGs + predict + postprocess; median of --runs after one warm-up
  (sizes above 1024: one timed run, no warm-up);
- cold: `dim predict` as a user runs it, process start to alpha file written (wall clock), peak RSS.
Modes: `baseline` (the reference path written with plain torch.nn.functional, NCHW, no tricks: the speed
mmagic would have here), `ours` (the defaults: on an AVX2 CPU without AVX-512, NNPACK convolutions; tiles
above 1024x1024 pixels), `ours-onednn` (--conv-backend onednn: oneDNN, channels-last), `ours-nchw`
(--reference-layout), `ours-bf16` (--precision bf16, opt-in), `ours-onnxruntime` (`dim export-onnx`, then
the .onnx file as checkpoint). Accuracy of each mode: mean and max
|alpha - baseline alpha| over the unknown region. --write replaces the "## Predict" section of
benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from hostinfo import cpu_line, load_line  # noqa: E402
from results_file import write_section  # noqa: E402

GOLDEN = ROOT.parent / "shared" / "reference" / "golden"
BASELINE_MAX_SIZE = 1024  # the whole-image reference path needs ~7 GB at 2048x2048
MODES = {"baseline": [], "ours": [], "ours-onednn": ["--conv-backend", "onednn"], "ours-nchw": ["--reference-layout"],
         "ours-bf16": ["--precision", "bf16"], "ours-onnxruntime": []}
LOAD_OPTIONS = {"ours": {}, "ours-onednn": {"conv_backend": "onednn"}, "ours-nchw": {"channels_last": False},
                "ours-bf16": {"precision": "bf16"}}
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


# ----------------------------------------------------------------------------- the reference path (baseline)
def reference_predict(sd: dict, merged_path: Path, trimap_path: Path, device: str = "cpu", tf32: bool = False
                      ) -> np.ndarray:
    """Read the PNGs as the reference's pipeline does, then `reference_alpha`."""
    import cv2

    merged = cv2.imread(str(merged_path), cv2.IMREAD_COLOR)
    trimap = cv2.imread(str(trimap_path), cv2.IMREAD_GRAYSCALE)
    return reference_alpha(sd, merged, trimap, device, tf32)


def reference_alpha(sd: dict, merged: np.ndarray, trimap: np.ndarray, device: str = "cpu", tf32: bool = False
                    ) -> np.ndarray:
    """Golden README steps 1-7 with plain torch.nn.functional, fp32, NCHW, as mmagic computes them, from a BGR
    uint8 image and a uint8 trimap to the uint8 alpha (`sd` on `device`; on CUDA cuDNN's TF32 is off unless
    `tf32`: PyTorch's default, so what mmagic runs on a GPU)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=tf32):
        img = torch.from_numpy(merged).to(device).permute(2, 0, 1)[None].float()[:, [2, 1, 0]]
        mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (MEAN, STD))
        img = (img - mean) / std
        tri = torch.from_numpy(trimap).to(device)[None, None].float() / 255.0
        h, w = trimap.shape
        pad = (0, -w % 32, 0, -h % 32)
        x = torch.cat([F.pad(img, pad, mode="reflect"), F.pad(tri, pad, mode="reflect")], dim=1)

        def conv(t, name, relu=True):
            weight = sd[name + ".weight"]
            t = F.conv2d(t, weight, sd[name + ".bias"], padding=weight.shape[-1] // 2)
            return F.relu(t, inplace=True) if relu else t  # mmcv ConvModule: inplace ReLU

        t, indices = x, []
        for block, n in enumerate((2, 2, 3, 3, 3), start=1):
            for j in range(n):
                t = conv(t, f"backbone.encoder.layer{block}.{2 * j}")
            t, idx = F.max_pool2d(t, 2, 2, return_indices=True)
            indices.append(idx)
        t = conv(t, "backbone.encoder.conv6")
        t = conv(t, "backbone.decoder.deconv6_1")
        for name, idx in zip(("deconv5_1", "deconv4_1", "deconv3_1", "deconv2_1", "deconv1_1"),
                             reversed(indices), strict=True):
            t = conv(F.max_unpool2d(t, idx, 2, 2), f"backbone.decoder.{name}")
        raw_alpha = conv(t, "backbone.decoder.deconv1", relu=False)
        out = torch.sigmoid(raw_alpha)
        if "refiner.refine_conv1.weight" in sd:
            r = conv(torch.cat([x[:, :3], out], dim=1), "refiner.refine_conv1")
            r = conv(conv(r, "refiner.refine_conv2"), "refiner.refine_conv3")
            out = torch.sigmoid(raw_alpha + conv(r, "refiner.refine_pred", relu=False))
        pred = out[0, 0, :h, :w].clamp(0, 1)
        ori = torch.from_numpy(trimap).to(device)
        pred = torch.where(ori == 255, torch.ones_like(pred), pred)
        pred = torch.where(ori == 0, torch.zeros_like(pred), pred)
        return (pred * 255).round().to(torch.uint8).cpu().numpy()


# ----------------------------------------------------------------------------- child: one warm measurement
def child_warm(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    work = Path(args.work)
    merged, trimap = work / f"merged_{args.size}.png", work / f"trimap_{args.size}.png"
    if args.mode == "baseline":
        from dimatting.checkpoint import extract_state_dict, load_checkpoint

        sd = extract_state_dict(load_checkpoint(work / "stage3.pth"))

        def once() -> np.ndarray:
            return reference_predict(sd, merged, trimap)
    else:
        from dimatting.inference import alpha_to_uint8, load_model
        from dimatting.io import read_image, read_trimap

        if args.mode == "ours-onnxruntime":
            matter = load_model(work / "stage3.onnx", device="cpu")
        else:
            matter = load_model(work / "stage3.pth", device="cpu", **LOAD_OPTIONS[args.mode])

        def once() -> np.ndarray:
            return alpha_to_uint8(matter.predict(read_image(merged), read_trimap(trimap)))

    runs = args.runs if args.size <= 1024 else 1
    if args.size <= 1024:
        once()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        alpha = once()
        times.append(time.perf_counter() - start)
    np.save(work / f"alpha_{args.mode}_{args.size}.npy", alpha)
    backend = getattr(matter, "conv_backend", "onnxruntime") if args.mode != "baseline" else "onednn (NCHW)"
    print(json.dumps({"median": statistics.median(times), "min": min(times), "max": max(times), "runs": runs,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "threads": torch.get_num_threads(), "backend": backend}))


def child_cold_baseline(args: argparse.Namespace) -> None:
    """Process start -> alpha written, for the reference path (what `tools/test.py`-like use would cost)."""
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    from dimatting.checkpoint import extract_state_dict, load_checkpoint

    work = Path(args.work)
    sd = extract_state_dict(load_checkpoint(work / "stage3.pth"))
    alpha = reference_predict(sd, work / f"merged_{args.size}.png", work / f"trimap_{args.size}.png")
    cv2.imwrite(str(work / f"cold_baseline_{args.size}.png"), alpha)


# ----------------------------------------------------------------------------- parent
def prepare(work: Path, sizes: list[int]) -> None:
    import cv2

    sys.path.insert(0, str(ROOT))
    from dimatting.checkpoint import save_checkpoint
    from tests.golden_weights import golden_model

    model = golden_model(GOLDEN, 3)
    save_checkpoint(work / "stage3.pth", {"state_dict": model.state_dict()})
    from dimatting.onnx_export import export_onnx

    export_onnx(model, work / "stage3.onnx")
    merged = cv2.imread(str(GOLDEN / "inputs" / "gt05_merged.png"), cv2.IMREAD_COLOR)
    trimap = cv2.imread(str(GOLDEN / "inputs" / "gt05_trimap.png"), cv2.IMREAD_GRAYSCALE)
    for s in sizes:
        cv2.imwrite(str(work / f"merged_{s}.png"), cv2.resize(merged, (s, s), interpolation=cv2.INTER_LINEAR))
        cv2.imwrite(str(work / f"trimap_{s}.png"), cv2.resize(trimap, (s, s), interpolation=cv2.INTER_NEAREST))


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, str, float]:
    """Run `cmd` in a fresh wrapper process; returns (wall seconds, peak RSS MB of cmd, stdout, CPU seconds:
    these hardly move with other jobs on a shared machine, wall seconds do)."""
    wrapper = ("import resource, subprocess, sys, time\n"
               "t = time.perf_counter(); r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "dt = time.perf_counter() - t\n"
               "sys.stderr.write(r.stderr[-2000:])\n"
               "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
               "print(r.returncode, dt, u.ru_maxrss / 1024, u.ru_utime + u.ru_stime)\n"
               "print(r.stdout)\n")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env, check=True)
    first, _, rest = out.stdout.partition("\n")
    code, wall, rss, cpu = first.split()
    if code != "0":
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {out.stderr[-1500:]}")
    return float(wall), float(rss), rest, float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[640, 1024, 2048, 4096])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/results.md")
    parser.add_argument("--child", choices=["warm", "cold-baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "warm":
        return child_warm(args)
    if args.child == "cold-baseline":
        return child_cold_baseline(args)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(ROOT / "src"))
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    dim = [shutil.which("dim")] if shutil.which("dim") else [sys.executable, "-m", "dimatting.cli"]
    try:
        prepare(work, args.sizes)
        rows = []
        for size in args.sizes:
            for mode in args.modes:
                if mode != "ours" and size > BASELINE_MAX_SIZE:
                    continue
                me = [sys.executable, __file__, "--child", "warm", "--mode", mode, "--size", str(size),
                      "--work", str(work), "--runs", str(args.runs), "--threads", str(args.threads)]
                _, _, out, _ = run_measured(me, env)
                warm = json.loads(out.strip().splitlines()[-1])
                if mode == "baseline":
                    cold_cmd = [sys.executable, __file__, "--child", "cold-baseline", "--size", str(size),
                                "--work", str(work), "--threads", str(args.threads)]
                else:
                    ckpt = work / ("stage3.onnx" if mode == "ours-onnxruntime" else "stage3.pth")
                    cold_cmd = [*dim, "predict", "--image", str(work / f"merged_{size}.png"), "--trimap",
                                str(work / f"trimap_{size}.png"), "--checkpoint", str(ckpt),
                                "-o", str(work / f"cold_{mode}_{size}.png"), "--device", "cpu", *MODES[mode]]
                cold, cold_rss, _, cold_cpu = run_measured(cold_cmd, env)
                row = {"size": size, "mode": mode, **warm, "cold": cold, "cold_rss_mb": cold_rss, "cold_cpu": cold_cpu}
                base = work / f"alpha_baseline_{size}.npy"
                if mode != "baseline" and base.exists():
                    import cv2

                    trimap = cv2.imread(str(work / f"trimap_{size}.png"), cv2.IMREAD_GRAYSCALE)
                    diff = np.abs(np.load(work / f"alpha_{mode}_{size}.npy").astype(np.float64)
                                  - np.load(base))[trimap == 128] / 255
                    row["mean_dalpha"], row["max_dalpha"] = float(diff.mean()), float(diff.max())
                rows.append(row)
                print(json.dumps(row), flush=True)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = format_table(rows, args, load_before, load_after)
    print(table)
    if args.write:
        write_section(f"## Predict\n\n{table}\n")


def format_table(rows: list[dict], args: argparse.Namespace, load_before, load_after) -> str:
    base = {r["size"]: r for r in rows if r["mode"] == "baseline"}
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python benchmarks/bench_predict.py"
        f" --sizes {' '.join(map(str, args.sizes))} --runs {args.runs} --modes {' '.join(args.modes)}`:"
        f" {cpu_line()}, torch.set_num_threads({args.threads}), stage-3 golden weights, GT05 resized to SxS;"
        f" {load_line(load_before, load_after)} (shared machine: absolute times move with the load; compare"
        " modes within one size). Cold CLI: `dim predict` process start to alpha PNG written.",
        "",
        "| size | mode (convolutions) | warm median s (min/max, runs) | x baseline | peak RSS warm MB |"
        " cold CLI s (CPU s) | x baseline | peak RSS cold MB | mean / max abs d-alpha vs baseline (unknown) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = base.get(r["size"])
        ratio = f"{b['median'] / r['median']:.2f}x" if b else "-"
        cold_ratio = f"{b['cold'] / r['cold']:.2f}x" if b else "-"
        acc = f"{r['mean_dalpha']:.2e} / {r['max_dalpha']:.3f}" if "mean_dalpha" in r else "-"
        lines.append(
            f"| {r['size']}² | {r['mode']} ({r['backend']}) | {r['median']:.2f} ({r['min']:.2f}/{r['max']:.2f},"
            f" {r['runs']}) | {ratio} |"
            f" {r['rss_mb']:.0f} | {r['cold']:.2f} ({r['cold_cpu']:.1f}) | {cold_ratio} | {r['cold_rss_mb']:.0f}"
            f" | {acc} |"
        )
    return "\n".join(lines)



if __name__ == "__main__":
    main()
