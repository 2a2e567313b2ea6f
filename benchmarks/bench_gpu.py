"""Benchmark predict and a training step on one CUDA GPU against the reference path ported to the same GPU.

    python benchmarks/bench_gpu.py [--sizes 1024 2048] [--runs 5] [--out gpu.md]

CI has no GPU: this runs where one is lent (see benchmarks/results.md, "## GPU", for the last reading).
Same inputs and weights as bench_predict.py / bench_train.py (golden GT05 resized to SxS, golden
deterministic stage-3 weights; golden 320x320 training crop, batch 1). Statistic: median of --runs after
one warm-up, `torch.cuda.synchronize()` before each clock read; peak GPU memory from
`torch.cuda.max_memory_allocated`. Predict modes: `baseline` (the reference path in plain torch, NCHW,
fp32 with cuDNN's TF32 off), `baseline-tf32` (the same under PyTorch's default, TF32 on: what mmagic runs
on a GPU), `ours` (dimatting's CUDA default: NCHW, fp32 with TF32 off, whole image while it fits),
`ours-tf32` (--precision tf32), `ours-bf16` (--precision bf16), `ours-channels-last` (the CPU default
layout), `ours-tiled` (768 px tiles, the CPU default above 1024x1024). Each predict includes PNG loading
and postprocessing as in bench_predict.py; |d-alpha| is against `baseline`. Train modes (PyTorch's
defaults, as tools/train.py runs): `baseline` (bench_train.baseline_step), `ours` (the engine's step) and
`ours-amp` (--amp: fp16 autocast + GradScaler).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_predict import GOLDEN, reference_predict  # noqa: E402
from bench_train import baseline_step, build_model, golden_batch  # noqa: E402


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_mb(device: str) -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")


def timed(fn, runs: int, device: str) -> tuple[float, float, float, object]:
    """(median, min, max seconds, last result) of `runs` calls after one warm-up, GPU work included."""
    result = fn()
    times = []
    for _ in range(runs):
        sync(device)
        tick = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - tick)
    return statistics.median(times), min(times), max(times), result


def predict_rows(sizes: list[int], runs: int, device: str) -> list[str]:
    import cv2

    from dimatting.checkpoint import extract_state_dict, load_checkpoint, save_checkpoint
    from dimatting.inference import alpha_to_uint8, load_model
    from dimatting.io import read_image, read_trimap
    from tests.golden_weights import golden_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        save_checkpoint(work / "stage3.pth", {"state_dict": golden_model(GOLDEN, 3).state_dict()})
        merged = cv2.imread(str(GOLDEN / "inputs" / "gt05_merged.png"), cv2.IMREAD_COLOR)
        trimap = cv2.imread(str(GOLDEN / "inputs" / "gt05_trimap.png"), cv2.IMREAD_GRAYSCALE)
        sd = {k: v.to(device) for k, v in extract_state_dict(load_checkpoint(work / "stage3.pth")).items()}
        for size in sizes:
            m_path, t_path = work / f"merged_{size}.png", work / f"trimap_{size}.png"
            cv2.imwrite(str(m_path), cv2.resize(merged, (size, size), interpolation=cv2.INTER_LINEAR))
            cv2.imwrite(str(t_path), cv2.resize(trimap, (size, size), interpolation=cv2.INTER_NEAREST))
            unknown = read_trimap(t_path) == 128
            modes = {"baseline": False, "baseline-tf32": True, "ours": {}, "ours-tf32": {"precision": "tf32"},
                     "ours-bf16": {"precision": "bf16"}, "ours-channels-last": {"channels_last": True},
                     "ours-tiled": {"tile_threshold": 0}}
            base_alpha, base_time = None, None
            for mode, options in modes.items():
                if device == "cpu" and "tf32" in mode:
                    continue  # a CUDA format (CPU smoke runs only check this script)
                reset_peak(device)
                if isinstance(options, bool):
                    def once(m_path=m_path, t_path=t_path, tf32=options) -> np.ndarray:
                        return reference_predict(sd, m_path, t_path, device, tf32)
                else:
                    matter = load_model(work / "stage3.pth", device, **options)

                    def once(matter=matter, m_path=m_path, t_path=t_path) -> np.ndarray:
                        return alpha_to_uint8(matter.predict(read_image(m_path), read_trimap(t_path)))
                median, low, high, alpha = timed(once, runs, device)
                peak = peak_mb(device)
                if base_alpha is None:
                    base_alpha, base_time, diff = alpha, median, "-"
                else:
                    d = np.abs(alpha.astype(np.float64) - base_alpha)[unknown] / 255
                    diff = f"{d.mean():.2e} / {d.max():.3f}"
                rows.append(f"| predict {size}² | {mode} | **{median * 1e3:.1f}** | {low * 1e3:.1f} / "
                            f"{high * 1e3:.1f} | {base_time / median:.2f}x | {peak:.0f} | {diff} |")
                print(rows[-1], flush=True)
    return rows


def train_rows(runs: int, device_name: str) -> list[str]:
    import torch

    from dimatting.engine.trainer import LossStep, autocast_context, make_batch

    device = torch.device(device_name)
    rows = []
    for stage in (1, 3):
        base_time = None
        for mode in ("baseline", "ours", "ours-amp"):
            model = build_model(stage).to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
            batch = golden_batch()
            batch = {"inputs": batch["inputs"].to(device),
                     "data_samples": {k: v.to(device) for k, v in batch["data_samples"].items()}}
            amp = mode == "ours-amp" and device.type == "cuda"
            step, scaler = LossStep(model), torch.amp.GradScaler(device.type, enabled=amp)
            losses = []

            def once(mode=mode, model=model, optimizer=optimizer, batch=batch, step=step, scaler=scaler,
                     losses=losses) -> None:
                if mode == "baseline":
                    losses.append(baseline_step(model, optimizer, batch))
                    return
                with autocast_context(mode == "ours-amp", device):
                    loss = sum(step(*make_batch(batch, model, device)).values())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                losses.append(loss.item())

            reset_peak(device_name)
            median, low, high, _ = timed(once, runs, device_name)
            peak = peak_mb(device_name)
            base_time = base_time or median
            rows.append(f"| train stage {stage} | {mode} | **{median * 1e3:.1f}** | {low * 1e3:.1f} / "
                        f"{high * 1e3:.1f} | {base_time / median:.2f}x | {peak:.0f} | first loss "
                        f"{losses[0]:.6f} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    parser.add_argument("--predict-only", action="store_true", help="skip the training-step rows")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke run of this script")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU visible; this benchmark is for a GPU machine (CI has none)")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "none (CPU smoke run)"
    header = [
        f"GPU: {name}, torch {torch.__version__}, cuDNN "
        f"{torch.backends.cudnn.version()}; median of {args.runs} runs after one warm-up.",
        "",
        "| what | mode | ms (median) | min / max ms | vs baseline | peak GPU MB | mean / max abs d-alpha "
        "vs baseline (unknown) |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(header), flush=True)
    rows = predict_rows(args.sizes, args.runs, args.device)
    if not args.predict_only:
        rows += train_rows(max(args.runs, 10), args.device)
    text = "\n".join(header + rows) + "\n"
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
