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

Order (most telling and cheapest first, so a short budget still gives the main answer): the eager steps
(`reference` and `ours` at each batch size, then the other eager modes), the whole runs, then the compiled steps
(a compilation costs a minute or more). Every row is a child process whose time limit is what is left of
--budget-s; a row that cannot start with MIN_START_S left is listed as skipped, so the script ends by itself
about --budget-s after it started. --out is rewritten (atomically) before and after every row and ends in a
status line: a run killed at any moment leaves the rows it finished and names those that did not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_train import baseline_step, build_model, golden_batch  # noqa: E402
from budget import Budget, Report, describe, hard_stop  # noqa: E402

STAGE1 = ROOT / "configs" / "dim" / "dim_stage1-v16_1xb1-1000k_comp1k.py"
MODES = ("reference", "ours", "ours-amp", "ours-compile", "ours-amp-compile")
CHILD_LIMIT_S = 900  # one row's own time limit; what is left of the budget caps it
# seconds of budget a row needs left to start (process start, CUDA and cuDNN set-up, compilation, the iterations)
MIN_START_S = {"step": 20, "compiled step": 60, "whole run": 30}
STEP_TABLE = ["| what | mode | ms per iteration | vs reference | first iteration | peak GPU MB |",
              "|---|---|---|---|---|---|"]


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


def run_capped(cmd: list[str], timeout: float) -> subprocess.CompletedProcess | str:
    """Run `cmd` with its output captured, in a process group of its own: past `timeout` seconds, or if this
    script is stopped meanwhile (SIGTERM, Ctrl-C), the whole group (data-loader and compile workers included) is
    killed. -> the finished process, or why it was stopped."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=max(timeout, 0.01))
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        return f"stopped after {timeout:.0f} s (what was left of the budget)"
    finally:
        if proc.returncode is None:  # still running (not yet reaped: its pid is still its group's id)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):  # a descendant outside the group holds the pipes
                proc.communicate(timeout=10)


def last_line(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or "").strip() or (proc.stdout or "").strip()
    return text.splitlines()[-1][:200] if text else f"exit {proc.returncode}"


def run_child(args: list[str], timeout: float) -> dict:
    """One measurement in a fresh process (compiled graphs, cuDNN state and memory do not carry over)."""
    proc = run_capped([sys.executable, __file__, "--child", *args], timeout)
    if isinstance(proc, str):
        return {"error": proc}
    if proc.returncode != 0:
        return {"error": last_line(proc)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def step_label(mode: str, batch: int) -> str:
    return f"step b{batch} {mode}"


def step_row(args: argparse.Namespace, mode: str, batch: int, budget: Budget, report: Report, times: dict) -> None:
    """One step row; `times[(mode, batch)]` gets its seconds per iteration (None if it did not run or failed)."""
    label = step_label(mode, batch)
    cells = f"| step b{batch} | {mode} |"
    need = MIN_START_S["compiled step" if "compile" in mode else "step"]
    times[(mode, batch)] = None
    if skip := budget.shortfall(need):
        report.row(label, f"{cells} {skip} | | | |", skipped=True)
        return
    report.begin(label)
    try:  # one failing row (an unreadable child result included) must not stop the others
        r = run_child([mode, str(batch), str(args.iters), args.device], min(CHILD_LIMIT_S, budget.left()))
        if "error" in r:
            line = f"{cells} failed: {r['error']} | | | |"
        else:
            seconds, first, peak_mb = r["seconds"], r["first"], r["peak_mb"]
            times[(mode, batch)] = seconds
            base = times.get(("reference", batch))
            ratio = f"{base / seconds:.2f}x" if base else "-"
            line = f"{cells} **{seconds * 1e3:.1f}** | {ratio} | {first:.1f} s | {peak_mb:.0f} |"
    except Exception as exc:
        traceback.print_exc()
        line = f"{cells} failed: {describe(exc)} | | | |"
    report.row(label, line)


def e2e_time(mode: str, batch: int, iters: int, data_root: Path, work: Path, cache: str,
             timeout: float = CHILD_LIMIT_S) -> dict:
    """`tools/train.py` for `iters` iterations (stopped after `timeout` s); the last logged window's mean time and
    data_time."""
    extra = [a for a in ("--amp" if "amp" in mode else "", "--compile" if "compile" in mode else "") if a]
    options = ["model.backbone.encoder.init_cfg=None", f"train_dataloader.batch_size={batch}",
               f"train_dataloader.dataset.data_root={data_root}", f"train_cfg.max_iters={iters}",
               f"train_cfg.val_interval={10 * iters}", "default_hooks.logger.interval=10",
               f"default_hooks.checkpoint.interval={10 * iters}", "randomness.seed=0", "val_evaluator=None"]
    proc = run_capped([sys.executable, str(ROOT / "tools" / "train.py"), str(STAGE1), "--work-dir", str(work),
                       *extra, "--decode-cache", cache, "--cfg-options", *options], timeout)
    if isinstance(proc, str):
        return {"error": proc}
    if proc.returncode != 0:
        return {"error": last_line(proc)}
    logs = work.glob("*/vis_data/scalars.json")
    records = [json.loads(line) for path in logs for line in path.read_text().splitlines()]
    last = [r for r in records if "loss" in r]
    if not last:
        return {"error": f"no training iteration logged in {work}/*/vis_data/scalars.json"}
    return {"time": last[-1]["time"], "data_time": last[-1]["data_time"]}


def e2e_plan(args: argparse.Namespace) -> list[tuple[str, int, str]]:
    """(mode, batch, "cache" or "decoding") of the whole-run rows, in run order: with the decode-once cache at
    every batch size, then the first mode decoding every epoch."""
    return ([(mode, batch, "cache") for batch in args.batches for mode in args.e2e_modes]
            + [(mode, batch, "decoding") for mode in args.e2e_modes[:1] for batch in args.batches])


def e2e_label(mode: str, batch: int, how: str) -> str:
    return f"train.py b{batch} {mode} {how}"


def e2e_rows(args: argparse.Namespace, step_times: dict, budget: Budget, report: Report) -> None:
    from dimatting.data.synthetic import make_synthetic

    report.add("", "### Whole runs (`tools/train.py`, per iteration against the same mode's step alone)", "",
               "| what | mode | ms per iteration | data_time ms | end to end |", "|---|---|---|---|---|")
    height, width = args.e2e_size
    need = MIN_START_S["whole run"]
    made = False  # the synthetic set, made for the first row that runs
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        for n, (mode, batch, how) in enumerate(e2e_plan(args)):
            label = e2e_label(mode, batch, how)
            cells = f"| tools/train.py b{batch} {height}x{width}, {how} | {mode} |"
            if skip := budget.shortfall(need):
                report.row(label, f"{cells} {skip} | | |", skipped=True)
                continue
            report.begin(label)
            try:  # one failing row (the synthetic set's making included) must not stop the others
                if not made:
                    shutil.rmtree(data, ignore_errors=True)  # what a failed attempt left
                    make_synthetic(data, n_train=args.e2e_images, n_test=0, seed=0, size=(height, width),
                                   nproc=os.cpu_count() or 1)
                    made = True
                # past the first epoch and one log window into the next
                iters = max(args.iters, 20, -(-args.e2e_images // batch) + 20)
                cache = "off" if how == "decoding" else str(Path(tmp) / f"cache_{mode}_b{batch}")
                r = e2e_time(mode, batch, iters, data, Path(tmp) / f"{mode}_b{batch}_{n}", cache,
                             min(CHILD_LIMIT_S, budget.left()))
                if "error" in r:
                    line = f"{cells} failed: {r['error']} | | |"
                else:
                    step = step_times.get((mode, batch))
                    ratio = (f"{r['time'] / step:.2f}x the step alone" if step else
                             f"- (no ratio: the `{mode}` step at b{batch} did not run or failed)")
                    line = f"{cells} **{r['time'] * 1e3:.1f}** | {r['data_time'] * 1e3:.1f} | {ratio} |"
            except Exception as exc:
                traceback.print_exc()
                line = f"{cells} failed: {describe(exc)} | | |"
            report.row(label, line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--e2e-size", type=int, nargs=2, default=[1080, 1440], metavar=("H", "W"))
    parser.add_argument("--e2e-images", type=int, default=16)
    parser.add_argument("--e2e-modes", nargs="*", default=["ours", "ours-amp"], choices=MODES[1:],
                        help="none: no whole runs")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke run of this script")
    parser.add_argument("--out", type=Path, help="also write the markdown tables here (rewritten after every row)")
    parser.add_argument("--budget-s", type=float, default=600,
                        help="rows that cannot start this many s after the start are skipped, a running one stopped")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, batch, iters, device = args.child
        print(json.dumps(step_time(mode, int(batch), int(iters), device)))
        return
    budget = Budget(args.budget_s)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU visible; this benchmark is for a GPU machine (CI has none)")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "none (CPU smoke run)"
    # most telling and cheapest first: eager steps (reference and ours, then the rest; the modes the whole runs
    # compare against included), whole runs, then the compiled steps
    first = [m for m in ("reference", "ours") if m in args.modes]
    eager = [m for m in args.modes if m not in first and ("compile" not in m or m in args.e2e_modes)]
    compiled = [m for m in args.modes if m not in first + eager]
    steps = [(m, b) for group in (first, eager) for b in args.batches for m in group]
    later = [(m, b) for b in args.batches for m in compiled]
    report = Report(args.out, [f"Training, {name}, torch {torch.__version__}, {os.cpu_count()} CPU cores; stage 1, "
                               f"320² crops; --budget-s {args.budget_s:.0f}."])
    report.plan([step_label(m, b) for m, b in steps] + [e2e_label(*row) for row in e2e_plan(args)]
                + [step_label(m, b) for m, b in later])
    times: dict = {}
    # a row's child stops at the budget's end by its own time limit; the hard stop is for the script's own work
    with hard_stop(report, budget.left() + 5):
        report.add("", "### Steps", "", *STEP_TABLE)
        for mode, batch in steps:
            step_row(args, mode, batch, budget, report, times)
        if args.e2e_modes:
            e2e_rows(args, times, budget, report)
        if later:
            report.add("", "### Steps, torch.compile (first iteration: compilation)", "", *STEP_TABLE)
            for mode, batch in later:
                step_row(args, mode, batch, budget, report, times)


if __name__ == "__main__":
    main()
