"""Benchmark DIM training on one CUDA GPU: the step against the reference's, and whole runs against the step.

    python benchmarks/bench_gpu_train.py [--iters 30] [--batches 1 16] [--out train.md]
    python benchmarks/bench_gpu_train.py --device cpu --iters 2 --batches 1 --modes reference ours \
        --e2e-modes ours --e2e-size 96 128 --e2e-images 4                                 # a smoke run on a CPU

Step rows: stage 1, 320x320 crops (the golden training crop, repeated to the batch size), golden weights,
`--iters` consecutive iterations timed together after warm-up iterations, the GPU synchronised only at the
ends (the reference reads its losses every iteration, which makes it wait for the GPU each time; ours does not,
and this timing shows what that buys). Modes:
- `reference`: mmagic's train_step in plain torch (benchmarks/bench_train.baseline_step), PyTorch's default
  numerics (cuDNN TF32 on), as mmagic runs it on a GPU; it reads the loss every iteration, as mmagic's log does;
- `ours`: the engine's `train_step` (fused Adam, losses left on the GPU), what `tools/train.py` runs;
- `ours-amp`: `--amp` (bf16 autocast, channels-last; fp16 + GradScaler before Ampere);
- `ours-compile`, `ours-amp-compile`: the same with `--compile` (compile time reported apart).
Whole-run rows: `tools/train.py` with the stage-1 config on a synthetic set of `--e2e-images` Comp-1k-sized
images (`--e2e-size`, default 1080x1440), the config's own num_workers (4), at each batch size; the
per-iteration `time` of the last logged window (vis_data/scalars.json) against the same mode's step alone.
Goal: <= 1.15x. Each mode runs with the decode-once cache (the default on a GPU) in a fresh folder, long enough
that the last window is past the first epoch (a real run's 23 epochs are nearly all like that); the first mode
runs again with `--decode-cache off`: every epoch then costs what the first one does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_train import baseline_step, build_model, golden_batch  # noqa: E402

STAGE1 = ROOT / "configs" / "dim" / "dim_stage1-v16_1xb1-1000k_comp1k.py"
MODES = ("reference", "ours", "ours-amp", "ours-compile", "ours-amp-compile")


def batch_of(size: int, device):
    """The golden crop as a packed batch of `size` (uint8 tensors on `device`)."""
    batch = golden_batch()
    repeat = lambda t: t.repeat(size, 1, 1, 1).to(device)  # noqa: E731
    return {"inputs": repeat(batch["inputs"]), "data_samples": {k: repeat(v) for k, v in batch["data_samples"].items()}}


def training_for(mode: str, device):
    """The engine's `Training` for a mode, built as `tools/train.py` builds it."""
    import torch

    from dimatting.engine import dist
    from dimatting.engine.trainer import LossStep, Training, amp_dtype, build_optimizer, uses_channels_last

    amp = "amp" in mode
    model = build_model(1).to(device)
    if uses_channels_last(amp, device):
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer("Adam", model.parameters(), {"lr": 1e-5}, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda" and amp_dtype(device) == torch.float16)
    step = LossStep(model)
    if "compile" in mode:
        step = torch.compile(step)
    return Training(model, step, optimizer, scaler, dist.DistInfo(device=device), amp, "", "bench")


def step_time(mode: str, batch_size: int, iters: int, device_name: str) -> dict:
    """Seconds per iteration over `iters` consecutive iterations (after warm-up), and the first run's cost."""
    import torch

    from dimatting.engine.trainer import train_step

    device = torch.device(device_name)
    batch = batch_of(batch_size, device)
    if mode == "reference":
        model = build_model(1).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
        once = lambda: baseline_step(model, optimizer, batch)  # noqa: E731 (reads the loss, as mmagic logs it)
    else:
        training = training_for(mode, device)
        once = lambda: train_step(training, batch)  # noqa: E731
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    tick = time.perf_counter()
    once()
    sync()
    first = time.perf_counter() - tick
    for _ in range(3):
        once()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tick = time.perf_counter()
    for _ in range(iters):
        once()
    sync()
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return {"seconds": (time.perf_counter() - tick) / iters, "first": first, "peak_mb": peak}


def run_child(args: list[str]) -> dict:
    """One measurement in a fresh process (compiled graphs, cuDNN state and memory do not carry over)."""
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1][:200] if (proc.stderr or proc.stdout)
                else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def step_rows(args: argparse.Namespace, deadline: float) -> tuple[list[str], dict]:
    rows, times = [], {}
    for batch in args.batches:
        base = None
        for mode in args.modes:
            if time.monotonic() > deadline:
                rows.append(f"| step b{batch} | {mode} | skipped: budget | | | |")
                continue
            r = run_child([mode, str(batch), str(args.iters), args.device])
            times[(mode, batch)] = r.get("seconds")
            if "error" in r:
                rows.append(f"| step b{batch} | {mode} | failed: {r['error']} | | | |")
            else:
                base = base or r["seconds"]
                rows.append(f"| step b{batch} | {mode} | **{r['seconds'] * 1e3:.1f}** | {base / r['seconds']:.2f}x | "
                            f"{r['first']:.1f} s | {r['peak_mb']:.0f} |")
            print(rows[-1], flush=True)
    return rows, times


def e2e_time(mode: str, batch: int, iters: int, data_root: Path, work: Path, cache: str) -> dict:
    """`tools/train.py` for `iters` iterations; the last logged window's mean time and data_time."""
    extra = [a for a in ("--amp" if "amp" in mode else "", "--compile" if "compile" in mode else "") if a]
    options = ["model.backbone.encoder.init_cfg=None", f"train_dataloader.batch_size={batch}",
               f"train_dataloader.dataset.data_root={data_root}", f"train_cfg.max_iters={iters}",
               f"train_cfg.val_interval={10 * iters}", "default_hooks.logger.interval=10",
               f"default_hooks.checkpoint.interval={10 * iters}", "randomness.seed=0", "val_evaluator=None"]
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), str(STAGE1), "--work-dir", str(work),
                           *extra, "--decode-cache", cache, "--cfg-options", *options],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else "failed"}
    logs = work.glob("*/vis_data/scalars.json")
    records = [json.loads(line) for path in logs for line in path.read_text().splitlines()]
    last = [r for r in records if "loss" in r][-1]
    return {"time": last["time"], "data_time": last["data_time"]}


def e2e_rows(args: argparse.Namespace, step_times: dict, deadline: float) -> list[str]:
    from dimatting.data.synthetic import make_synthetic

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        height, width = args.e2e_size
        make_synthetic(data, n_train=args.e2e_images, n_test=0, seed=0, size=(height, width),
                       nproc=os.cpu_count() or 1)
        for batch in args.batches:
            # past the first epoch and one log window into the next
            iters = max(args.iters, 20, -(-args.e2e_images // batch) + 20)
            runs = [(mode, str(Path(tmp) / f"cache_{mode}_b{batch}")) for mode in args.e2e_modes]
            runs.append((args.e2e_modes[0], "off"))
            for mode, cache in runs:
                what = f"tools/train.py b{batch} {height}x{width}, " + ("decoding" if cache == "off" else "cache")
                if time.monotonic() > deadline:
                    rows.append(f"| {what} | {mode} | skipped: budget | | |")
                    continue
                r = e2e_time(mode, batch, iters, data, Path(tmp) / f"{mode}_b{batch}_{len(rows)}", cache)
                step = step_times.get((mode, batch))
                if "error" in r or not step:
                    rows.append(f"| {what} | {mode} | failed: {r.get('error')} | | |")
                else:
                    rows.append(f"| {what} | {mode} | **{r['time'] * 1e3:.1f}** | {r['data_time'] * 1e3:.1f} | "
                                f"{r['time'] / step:.2f}x the step alone |")
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--e2e-size", type=int, nargs=2, default=[1080, 1440], metavar=("H", "W"))
    parser.add_argument("--e2e-images", type=int, default=16)
    parser.add_argument("--e2e-modes", nargs="+", default=["ours", "ours-amp"], choices=MODES[1:])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke run of this script")
    parser.add_argument("--out", type=Path, help="also write the markdown tables here")
    parser.add_argument("--budget-s", type=float, default=600, help="skip what would start after this many s")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, batch, iters, device = args.child
        print(json.dumps(step_time(mode, int(batch), int(iters), device)))
        return
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU visible; this benchmark is for a GPU machine (CI has none)")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "none (CPU smoke run)"
    header = [f"Training, {name}, torch {torch.__version__}, {os.cpu_count()} CPU cores; stage 1, 320² crops.", "",
              "| what | mode | ms per iteration | vs reference | first iteration | peak GPU MB |",
              "|---|---|---|---|---|---|"]
    print("\n".join(header), flush=True)
    deadline = time.monotonic() + args.budget_s
    rows, times = step_rows(args, deadline)
    e2e = ["", "| what | mode | ms per iteration | data_time ms | end to end |", "|---|---|---|---|---|"]
    print("\n".join(e2e), flush=True)
    e2e += e2e_rows(args, times, deadline)
    if args.out:
        args.out.write_text("\n".join(header + rows + e2e) + "\n")


if __name__ == "__main__":
    main()
