"""Benchmark prediction on one CUDA GPU against the reference path at the reference's GPU numerics (TF32).

    python benchmarks/bench_gpu.py [--sizes 1024 4096] [--folder 100x1024 20x4096] [--budget-s 330] [--out gpu.md]
    python benchmarks/bench_gpu.py --device cpu --sizes 96 --folder 3x96 --runs 2   # smoke run of this script

CI has no GPU: this runs where one is lent (benchmarks/gpu_check.sh; results in benchmarks/results.md, "GPU").
Sections run one after the other (eager predict, folders, compiled predict: the slow compilations last); a
section or row that fails prints its error and the rest still runs, and whatever would start after
--budget-s is skipped (listed as such); a row still running at --budget-s is stopped there, so the script ends by
itself. --out is rewritten (atomically) before and after every row and ends in a status line: a run killed at any
moment leaves the rows it finished and names the row it was running and those it had not reached.

1. predict (in-process, model loaded): numpy RGB image + trimap in, uint8 alpha on the host out. Inputs: the
   golden GT05 sample resized to SxS with the golden stage-3 weights (synthetic image and random weights if
   ../shared is absent; speed does not depend on weight values). Modes: `reference-tf32` (the reference
   path in plain torch, NCHW, fp32 with PyTorch's default cuDNN TF32: what mmagic runs on a GPU; the
   baseline of every ratio), `reference-fp32` (TF32 off), `ours` (the CUDA default: tf32), `ours-fp32`,
   `ours-bf16` (eager), `ours-tf32-nhwc` (channels-last, to check the default layout), `ours-bf16-compiled`
   (torch.compile) and `ours-bf16-cudagraphs` (torch.compile mode reduce-overhead). Statistic: median of
   --runs after the first call (10 at <= 2048², else 5), `torch.cuda.synchronize()` before each clock read;
   `first ms` is the first call (cuDNN's algorithm search, compilation: the cold cost). Peak memory from
   `torch.cuda.max_memory_allocated`, also per padded pixel above what was allocated before (weights),
   the figure behind `CUDA_BYTES_PER_PIXEL`. |d-alpha|: mean / max over the unknown region against
   reference-tf32 and against reference-fp32 (uint8 alphas / 255).
2. folder: `dim predict --input-dir` in-process over N copies of the SxS input PNGs (checkpoint load
   included), --io-workers 0 (one step after the other) vs the default (threads read ahead, write behind),
   default precision and bf16 (--cutout: also the cutouts); images/s, and how busy the GPU was: the
   CUDA-event time of each image's queued work summed over the run's wall time, and nvidia-smi's mean
   utilisation sampled every 100 ms. With --device cpu this measures the same overlap on the CPU.
Training is measured by benchmarks/bench_gpu_train.py (the step against the reference's, whole runs against the
step).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_predict import GOLDEN, reference_alpha  # noqa: E402
from budget import Budget, Report, describe, hard_stop  # noqa: E402

PREDICT_MODES = {  # mode -> load_model options (None: the reference path; the bool is its TF32 switch)
    "reference-tf32": True,
    "reference-fp32": False,
    "ours": {},
    "ours-fp32": {"precision": "fp32"},
    "ours-bf16": {"precision": "bf16"},
    "ours-tf32-nhwc": {"precision": "tf32", "channels_last": True},
    "ours-bf16-compiled": {"precision": "bf16", "compile": True},
    "ours-bf16-cudagraphs": {"precision": "bf16", "compile": "reduce-overhead"},
}
# seconds a compiled mode is assumed to need at one size, so that it is not started too close to the budget
COMPILE_ALLOWANCE_S = 60


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def inputs(size: int) -> tuple[np.ndarray, np.ndarray]:
    """GT05 (or a synthetic sample when ../shared is absent) resized to size x size: BGR image, trimap."""
    import cv2

    if (GOLDEN / "inputs" / "gt05_merged.png").is_file():
        merged = cv2.imread(str(GOLDEN / "inputs" / "gt05_merged.png"), cv2.IMREAD_COLOR)
        trimap = cv2.imread(str(GOLDEN / "inputs" / "gt05_trimap.png"), cv2.IMREAD_GRAYSCALE)
    else:
        from dimatting.data.synthetic import make_sample

        sample = make_sample(0, "test", 0, (512, 512))
        merged, trimap = sample["merged"], sample["trimap"]
    return (cv2.resize(merged, (size, size), interpolation=cv2.INTER_LINEAR),
            cv2.resize(trimap, (size, size), interpolation=cv2.INTER_NEAREST))


def stage3_checkpoint(path: Path) -> Path:
    """The golden stage-3 weights (seeded random ones without ../shared) saved as a checkpoint."""
    import torch

    from dimatting.checkpoint import save_checkpoint
    from dimatting.models import build_dim

    if (GOLDEN / "weights.py").is_file():
        from tests.golden_weights import golden_model

        model = golden_model(GOLDEN, 3)
    else:
        torch.manual_seed(0)
        model = build_dim(with_refiner=True)
    save_checkpoint(path, {"state_dict": model.state_dict()})
    return path


def predict_mode(mode: str, options, ckpt: Path, merged: np.ndarray, trimap: np.ndarray, runs: int,
                 device: str) -> tuple[dict, np.ndarray]:
    """Time one mode at one size: first call, then `runs` calls; -> (figures, uint8 alpha)."""
    import torch

    from dimatting.checkpoint import extract_state_dict, load_checkpoint
    from dimatting.inference import load_model

    gc.collect()  # the previous mode's model and buffers
    if device == "cuda":
        torch.cuda.empty_cache()
    if isinstance(options, bool):
        sd = {k: v.to(device) for k, v in extract_state_dict(load_checkpoint(ckpt)).items()}

        def once() -> np.ndarray:
            return reference_alpha(sd, merged, trimap, device, options)
    else:
        matter = load_model(ckpt, device, tile_threshold=None, **options)
        rgb = np.ascontiguousarray(merged[:, :, ::-1])

        def once() -> np.ndarray:
            return matter.predict(rgb, trimap, as_uint8=True)

    base = torch.cuda.memory_allocated() if device == "cuda" else 0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    tick = time.perf_counter()
    alpha = once()
    sync(device)
    first = time.perf_counter() - tick
    times = []
    for _ in range(runs):
        sync(device)
        tick = time.perf_counter()
        alpha = once()
        sync(device)
        times.append(time.perf_counter() - tick)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else float("nan")
    padded = (-(-trimap.shape[0] // 32) * 32) * (-(-trimap.shape[1] // 32) * 32)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "first": first,
            "peak_gib": peak / 2**30, "bytes_per_px": (peak - base) / padded}, alpha


def d_alpha(alpha: np.ndarray, reference: np.ndarray | None, unknown: np.ndarray) -> str:
    if reference is None:
        return "-"
    d = np.abs(alpha.astype(np.float64) - reference)[unknown] / 255
    return f"{d.mean():.2e} / {d.max():.3f}"


def predict_plan(args, compiled: bool) -> list[tuple[int, str]]:
    """(size, mode) of the eager section's rows (compiled=False) or of the compiled one's, in run order."""
    return [(size, mode) for size in args.sizes for mode, options in PREDICT_MODES.items() if mode in args.modes
            # CUDA formats and graphs are left out of a CPU smoke run (it only checks this script)
            and not (args.device == "cpu" and ("tf32" in mode or "cudagraphs" in mode))
            and compiled == bool(isinstance(options, dict) and options.get("compile"))]


def predict_label(size: int, mode: str) -> str:
    return f"predict {size}² {mode}"


def predict_section(args, budget: Budget, ckpt: Path, report: Report, compiled: bool, state: dict) -> None:
    """The eager modes (compiled=False) or the compiled ones, at every size; `state` keeps each size's
    reference alphas and baseline time from the eager pass for the compiled one."""
    report.add("", "### Predict" + (", torch.compile (first ms: compilation)" if compiled else ""), "",
               "| size | mode | ms (median) | min / max ms | first ms | vs reference-tf32 | peak GiB | "
               "B/px above weights | abs d-alpha vs reference-tf32 (mean / max, unknown) | vs reference-fp32 |",
               "|---|---|---|---|---|---|---|---|---|---|")
    loaded: tuple[int, np.ndarray, np.ndarray] | None = None
    for size, mode in predict_plan(args, compiled):
        label = predict_label(size, mode)
        if skip := budget.shortfall(COMPILE_ALLOWANCE_S if compiled else 10):
            report.row(label, f"| {size}² | {mode} | {skip} | | | | | | | |", skipped=True)
            continue
        report.begin(label)
        try:  # one failing mode (its inputs included) must not stop the others
            if loaded is None or loaded[0] != size:
                loaded = (size, *inputs(size))
            _, merged, trimap = loaded
            unknown = trimap == 128
            runs = args.runs or (10 if size <= 2048 else 5)
            alphas, base_time = state.setdefault(size, ({}, [None]))
            fig, alphas[mode] = predict_mode(mode, PREDICT_MODES[mode], ckpt, merged, trimap, runs, args.device)
            if base_time[0] is None and (mode == "reference-tf32" or args.device == "cpu"):
                base_time[0] = fig["median"]
            ratio = f"{base_time[0] / fig['median']:.2f}x" if base_time[0] else "-"
            line = (f"| {size}² | {mode} | **{fig['median'] * 1e3:.1f}** | {fig['min'] * 1e3:.1f} / "
                    f"{fig['max'] * 1e3:.1f} | {fig['first'] * 1e3:.0f} | {ratio} | {fig['peak_gib']:.2f} | "
                    f"{fig['bytes_per_px']:.0f} | {d_alpha(alphas[mode], alphas.get('reference-tf32'), unknown)} | "
                    f"{d_alpha(alphas[mode], alphas.get('reference-fp32'), unknown)} |")
        except Exception as exc:
            traceback.print_exc()
            line = f"| {size}² | {mode} | failed: {describe(exc)} | | | | | | | |"
        report.row(label, line)


@contextlib.contextmanager
def gpu_busy_meter(device: str):
    """Sum the GPU time of each `Matter.submit`'s queued work (CUDA events) and sample nvidia-smi."""
    import torch

    from dimatting.inference import Matter

    record = {"events": [], "smi": []}
    original = Matter.submit
    sampler = None
    if device == "cuda":
        def timed_submit(self, *a, **k):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            pending = original(self, *a, **k)
            end.record()
            record["events"].append((start, end))
            return pending

        Matter.submit = timed_submit
        if shutil.which("nvidia-smi"):
            sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                        "-lms", "100"], stdout=subprocess.PIPE, text=True)
    try:
        yield record
    finally:
        Matter.submit = original
        if sampler is not None:
            sampler.terminate()
            text = sampler.communicate(timeout=10)[0]
            record["smi"] = [int(v) for v in text.split() if v.strip().isdigit()]
        if device == "cuda":
            torch.cuda.synchronize()
            record["busy_s"] = sum(s.elapsed_time(e) for s, e in record["events"]) / 1e3


def folder_run(src: Path, ckpt: Path, out_dir: Path, device: str, precision: str | None, workers: int | None,
               cutout: bool = False) -> tuple[float, dict]:
    from dimatting.cli import main

    argv = ["predict", "--input-dir", str(src / "img"), "--trimap-dir", str(src / "tri"), "--output-dir",
            str(out_dir), "--checkpoint", str(ckpt), "--device", device] + (["--cutout"] if cutout else [])
    argv += ["--precision", precision] if precision else []
    argv += ["--io-workers", str(workers)] if workers is not None else []
    with gpu_busy_meter(device) as record:
        tick = time.perf_counter()
        code = main(argv)
        wall = time.perf_counter() - tick
    if code != 0:
        raise RuntimeError(f"dim predict exited {code}")
    return wall, record


def folder_plan(args) -> list[tuple[str, str | None, int | None]]:
    """(NxS, precision, io-workers) of the folder section's rows, in run order."""
    precisions = [None, "bf16"] if args.device == "cuda" else [None]  # bf16 is opt-in and rarely fast on CPUs
    return [(spec, precision, workers) for spec in args.folder for precision in precisions for workers in (0, None)]


def folder_label(spec: str, precision: str | None, workers: int | None) -> str:
    return f"folder {spec} {precision or 'default'} --io-workers {'default' if workers is None else workers}"


def folder_section(args, budget: Budget, ckpt: Path, report: Report) -> None:
    import cv2

    report.add("", "### Folders (`dim predict --input-dir`, checkpoint load included)", "",
               "| images | precision | --io-workers | s | images/s | GPU busy (CUDA events) | nvidia-smi mean util |",
               "|---|---|---|---|---|---|---|")
    ready: set[str] = set()  # the specs whose input folders are made
    with tempfile.TemporaryDirectory() as tmp:
        for spec, precision, workers in folder_plan(args):
            label = folder_label(spec, precision, workers)
            src = Path(tmp) / spec
            for other in ready - {spec}:  # the previous spec's rows are done (the plan is grouped by spec)
                shutil.rmtree(Path(tmp) / other, ignore_errors=True)
                ready.discard(other)
            cells = (f"| {spec.lower().replace('x', ' x ', 1)}²{' --cutout' if args.cutout else ''} | "
                     f"{precision or 'default'} | {'default' if workers is None else 0} |")
            if skip := budget.shortfall(30):
                report.row(label, f"{cells} {skip} | | | |", skipped=True)
                continue
            report.begin(label)
            try:  # one failing row (its inputs included) must not stop the others
                count, size = (int(v) for v in spec.lower().split("x"))
                if spec not in ready:  # the inputs, made for the first row of this spec that runs
                    shutil.rmtree(src, ignore_errors=True)  # what a failed attempt left
                    (src / "img").mkdir(parents=True)
                    (src / "tri").mkdir()
                    merged, trimap = inputs(size)
                    cv2.imwrite(str(src / "img" / "000.png"), merged)
                    cv2.imwrite(str(src / "tri" / "000.png"), trimap)
                    for i in range(1, count):
                        shutil.copy(src / "img" / "000.png", src / "img" / f"{i:03d}.png")
                        shutil.copy(src / "tri" / "000.png", src / "tri" / f"{i:03d}.png")
                    ready.add(spec)
                shutil.rmtree(src / "out", ignore_errors=True)
                wall, record = folder_run(src, ckpt, src / "out", args.device, precision, workers, args.cutout)
                busy = f"{record['busy_s'] / wall:.0%}" if "busy_s" in record else "-"
                smi = f"{statistics.mean(record['smi']):.0f}%" if record["smi"] else "-"
                line = f"{cells} {wall:.2f} | **{count / wall:.1f}** | {busy} | {smi} |"
            except Exception as exc:
                traceback.print_exc()
                line = f"{cells} failed: {describe(exc)} | | | |"
            report.row(label, line)


def header(device: str) -> list[str]:
    import torch

    if device == "cuda":
        name = torch.cuda.get_device_name()
        memory = torch.cuda.get_device_properties(0).total_memory / 2**30
        what = f"{name} ({memory:.0f} GiB), CUDA {torch.version.cuda}"
    else:
        what = "none (CPU smoke run of this script)"
    return [f"GPU: {what}; torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1024, 4096])
    parser.add_argument("--modes", nargs="+", default=list(PREDICT_MODES), choices=PREDICT_MODES, metavar="MODE",
                        help=f"predict modes to run (default: all of {', '.join(PREDICT_MODES)})")
    parser.add_argument("--runs", type=int, default=0, help="timed runs per mode (default: 10, 5 above 2048²)")
    parser.add_argument("--folder", nargs="*", default=["100x1024", "20x4096"], metavar="NxS")
    parser.add_argument("--cutout", action="store_true", help="folders: also write cutouts (CPU work per image)")
    parser.add_argument("--budget-s", type=float, default=330, help="skip what would start after this many s")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke run of this script")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    budget = Budget(args.budget_s)  # from the start: the outer time limit counts torch's import too
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU visible; this benchmark is for a GPU machine (CI has none)")
    report = Report(args.out, header(args.device))
    report.plan([predict_label(size, mode) for size, mode in predict_plan(args, False)]
                + [folder_label(*row) for row in folder_plan(args)]
                + [predict_label(size, mode) for size, mode in predict_plan(args, True)])
    with hard_stop(report, budget.left()), tempfile.TemporaryDirectory() as tmp:
        ckpt = stage3_checkpoint(Path(tmp) / "stage3.pth")
        state: dict = {}
        sections = [("predict", lambda: predict_section(args, budget, ckpt, report, False, state)),
                    ("folder", lambda: folder_section(args, budget, ckpt, report)),
                    ("compiled", lambda: predict_section(args, budget, ckpt, report, True, state))]
        for name, run in sections:
            try:
                run()
            except Exception as exc:  # a broken section must not lose the others
                traceback.print_exc()
                report.section_failed(name, exc)


if __name__ == "__main__":
    main()
