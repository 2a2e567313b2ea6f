"""What a CPU user waits for in `dim evaluate`: process start to table, against mmagic in the same run.

    python benchmarks/bench_evaluate.py [--images 112] [--runs 3] [--mmagic-python PY] [--no-write]

Inputs: ~100 real-looking matting images built in a temporary folder from the shared real samples (GT05 and
pymatting's lemur: resized 0.8-2.6x, cropped, flipped, rotated; trimaps from theirs; predictions = the GT
blurred and shifted by a smooth field, rounded, masked by the trimap), saved as PNGs like a test set.
Measured, interleaved run by run (median of --runs):
- `dim --help`, `dim evaluate` on one image (start-up: the first image reached and scored);
- whole process: `dim evaluate PRED GT TRIMAP` (default options) against mmagic 1.2.0's own metrics in a
  process of the same shape (`benchmarks/mmagic_evaluate.py`, run by --mmagic-python: a Python that has
  mmagic; its import of torch + mmengine + mmcv is part of what its users wait for), or without it against
  the literal reference-style metrics of bench_metrics.py in a process that imports only numpy and OpenCV;
- warm, in this process, over the first --warm-images: `dimatting.metrics.evaluate` (1 and `auto` workers)
  against the reference-style metrics (files read the same way).
Values: our means must equal mmagic's (and the reference-style ones) to 1e-9 relative. --no-write leaves
benchmarks/results.md alone; otherwise its "## Evaluate" section is replaced.
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

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_metrics import REFERENCE  # noqa: E402
from hostinfo import cpu_line, load_line  # noqa: E402
from results_file import write_section  # noqa: E402


# ------------------------------------------------------------------------------------------------ inputs
def _sources() -> list[tuple[np.ndarray, np.ndarray]]:
    """(alpha, trimap in {0,128,255}) of the shared real samples."""
    out = []
    for alpha_path, trimap_path in ((DATA / "comp1k_mini" / "alpha" / "GT05.jpg", DATA / "comp1k_mini" / "trimap" /
                                     "GT05.png"), (DATA / "lemur" / "lemur_alpha.png", DATA / "lemur" /
                                                   "lemur_trimap.png")):
        alpha = cv2.imread(str(alpha_path), cv2.IMREAD_GRAYSCALE)
        trimap = cv2.imread(str(trimap_path), cv2.IMREAD_GRAYSCALE)
        if alpha is None or trimap is None:
            sys.exit(f"error: {alpha_path.parent.parent} (shared real samples) not found; run beside ../shared")
        trimap = np.where(trimap == 0, 0, np.where(trimap == 255, 255, 128)).astype(np.uint8)
        out.append((alpha, trimap))
    return out


def make_images(folder: Path, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """Write n (pred, gt, trimap) PNG triples under folder/{pred,gt,trimap}; returns their sizes (h, w)."""
    rng = np.random.default_rng(seed)
    sources = _sources()
    for sub in ("pred", "gt", "trimap"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    sizes = []
    for k in range(n):
        alpha, trimap = sources[k % len(sources)]
        scale = rng.uniform(0.8, 2.6)
        gt = cv2.resize(alpha, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        tri = cv2.resize(trimap, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_NEAREST)
        h, w = gt.shape
        ch, cw = int(h * rng.uniform(0.75, 1.0)), int(w * rng.uniform(0.75, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        gt, tri = gt[y:y + ch, x:x + cw], tri[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            gt, tri = gt[:, ::-1], tri[:, ::-1]
        turns = int(rng.integers(0, 4))
        gt, tri = np.ascontiguousarray(np.rot90(gt, turns)), np.ascontiguousarray(np.rot90(tri, turns))
        hh, ww = gt.shape
        yy, xx = np.mgrid[0:hh, 0:ww] / max(hh, ww)
        shift = rng.uniform(5, 30) * np.sin(rng.uniform(3, 9) * xx + rng.uniform(0, 6)) * np.cos(rng.uniform(3, 9) * yy)
        pred = cv2.GaussianBlur(gt.astype(np.float64), (0, 0), rng.uniform(0.8, 4.0)) + shift
        pred = np.clip(np.round(pred), 0, 255).astype(np.uint8)
        pred[tri == 0], pred[tri == 255] = 0, 255
        name = f"img{k:03d}.png"
        for sub, image in (("pred", pred), ("gt", gt), ("trimap", tri)):
            cv2.imwrite(str(folder / sub / name), image)
        sizes.append((hh, ww))
    return sizes


# ------------------------------------------------------------------------------------- processes
REFERENCE_PROCESS = """
import json, sys
from pathlib import Path
import cv2, numpy as np
sys.path.insert(0, {bench!r})
from bench_metrics import REFERENCE
pred_dir, gt_dir, trimap_dir = (Path(a) for a in sys.argv[1:4])
sums, n = dict.fromkeys(REFERENCE, 0.0), 0
for path in sorted(pred_dir.glob("*.png")):
    maps = [cv2.imread(str(d / path.name), cv2.IMREAD_GRAYSCALE) for d in (pred_dir, gt_dir, trimap_dir)]
    for name, fn in REFERENCE.items():
        sums[name] += fn(*maps)
    n += 1
print(json.dumps({{k: v / n for k, v in sums.items()}}))
"""


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and its workers, stdout). CPU time hardly moves with other
    jobs on a shared machine, wall time does: both are reported."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({out.returncode}): {out.stderr[-1500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout


def dim_command() -> list[str]:
    """The installed `dim` beside this Python (what a user runs), else `python -m dimatting.cli`."""
    script = Path(sys.executable).with_name("dim")
    return [str(script)] if script.exists() else [sys.executable, "-m", "dimatting.cli"]


def means_of_table(text: str) -> dict[str, float]:
    row = next(line for line in text.splitlines() if line.startswith("mean"))
    values = row.split(")", 1)[1].split()
    return dict(zip(("SAD", "MSE", "GRAD", "CONN"), map(float, values), strict=True))


def whole_process(work: Path, args: argparse.Namespace, env: dict) -> tuple[dict, dict, dict]:
    """Interleaved whole-process runs; returns median wall and CPU seconds per kind, mean values per kind."""
    dirs = [str(work / d) for d in ("pred", "gt", "trimap")]
    one = [str(work / "one" / d) for d in ("pred", "gt", "trimap")]
    dim = dim_command()
    json_out = work / "ours.json"
    kinds = {
        "dim --help": [*dim, "--help"],
        "dim evaluate, 1 image": [*dim, "evaluate", *one],
        "dim evaluate": [*dim, "evaluate", *dirs, "--json", str(json_out)],
        "dim evaluate --workers 1": [*dim, "evaluate", *dirs, "--workers", "1"],
    }
    if args.mmagic_python:
        kinds["mmagic 1.2.0 process"] = [args.mmagic_python, str(ROOT / "benchmarks" / "mmagic_evaluate.py"), *dirs]
    else:
        kinds["reference-style process"] = [sys.executable, "-c",
                                            REFERENCE_PROCESS.format(bench=str(ROOT / "benchmarks")), *dirs]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpu_times: dict[str, list[float]] = {k: [] for k in kinds}
    values: dict[str, dict] = {}
    for _ in range(args.runs):
        for kind, cmd in kinds.items():
            wall, cpu, out = timed(cmd, env)
            times[kind].append(wall)
            cpu_times[kind].append(cpu)
            if kind == "dim evaluate":
                values[kind] = json.loads(json_out.read_text())["mean"]
            elif kind == "reference-style process":
                values[kind] = json.loads(out.strip().splitlines()[-1])
            elif kind.startswith("mmagic"):
                raw = json.loads(out.strip().splitlines()[-1])
                values[kind] = {"SAD": raw["SAD"], "MSE": raw["MattingMSE"], "GRAD": raw["GradientError"],
                                "CONN": raw["ConnectivityError"]}
            print(f"{kind}: {wall:.3f} s wall, {cpu:.3f} s CPU", flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return medians, {k: statistics.median(v) for k, v in cpu_times.items()}, values


def warm(work: Path, runs: int, n_images: int) -> dict[str, float]:
    """In-process medians over the first `n_images` (files read every time, nothing cached between runs)."""
    from dimatting.metrics import evaluate

    names = sorted(p.name for p in (work / "pred").glob("*.png"))[:n_images]
    paths = [[work / d / n for n in names] for d in ("pred", "gt", "trimap")]

    def reference() -> None:
        for p, g, t in zip(*paths, strict=True):
            maps = [cv2.imread(str(x), cv2.IMREAD_GRAYSCALE) for x in (p, g, t)]
            for fn in REFERENCE.values():
                fn(*maps)

    cases = {"reference-style": reference, "ours, 1 process": lambda: evaluate(*paths, workers=1),
             "ours, auto": lambda: evaluate(*paths, workers="auto")}
    out = {}
    for kind, fn in cases.items():
        fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[kind] = statistics.median(times)
        print(f"warm {kind}: {out[kind]:.3f} s", flush=True)
    return out


# ------------------------------------------------------------------------------------------- report
def check_values(values: dict) -> None:
    ours = values["dim evaluate"]
    for kind, theirs in values.items():
        for m, v in theirs.items():
            assert abs(ours[m] - v) <= 1e-9 * max(abs(v), 1e-12), (kind, m, ours[m], v)


def markdown(args, sizes, cold, cpu, warm_times, loads) -> str:
    n = len(sizes)
    pixels = np.mean([h * w for h, w in sizes]) / 1e6
    base = "mmagic 1.2.0 process" if "mmagic 1.2.0 process" in cold else "reference-style process"
    lines = [
        "## Evaluate",
        "",
        f"`python benchmarks/bench_evaluate.py --images {n} --runs {args.runs}"
        + (" --mmagic-python PY`" if args.mmagic_python else "`")
        + f" on {cpu_line()}; {loads}. {n} PNG triples built from the shared real samples (GT05, lemur: "
        f"resized, cropped, flipped, rotated; predictions = blurred, shifted GT masked by the trimap), "
        f"{min(min(s) for s in sizes)}-{max(max(s) for s in sizes)} px sides, {pixels:.2f} Mpx on average. "
        f"Medians of {args.runs} interleaved runs; means equal to mmagic's to 1e-9 relative (checked each run).",
        "",
        "| what | whole process, wall s | x " + base.replace(" process", "") + " | CPU s (all processes) | x |",
        "|---|---|---|---|---|",
    ]
    for kind, t in cold.items():
        compared = kind.startswith("dim evaluate") and "1 image" not in kind
        ratio = f"**{cold[base] / t:.1f}x**" if compared else ""
        if kind == "dim evaluate":  # its workers are children of a fork server that nobody waits for
            lines.append(f"| {kind} | {t:.3f} | {ratio} | (workers not counted) | |")
            continue
        cpu_ratio = f"{cpu[base] / cpu[kind]:.1f}x" if compared else ""
        lines.append(f"| {kind} | {t:.3f} | {ratio} | {cpu[kind]:.3f} | {cpu_ratio} |")
    lines += ["", f"| warm, in one process, first {args.warm_images} images (files read each run) | s "
              "| x reference-style |", "|---|---|---|"]
    for kind, t in warm_times.items():
        lines.append(f"| {kind} | {t:.3f} | {warm_times['reference-style'] / t:.1f}x |")
    return "\n".join(lines) + "\n"



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=112)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mmagic-python", help="a Python with mmagic 1.2.0 installed (the baseline; without it: "
                        "the reference-style metrics in a process)")
    parser.add_argument("--warm-images", type=int, default=16, help="images of the in-process comparison")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    work = Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    try:
        sizes = make_images(work, args.images)
        make_images(work / "one", 1, seed=1)
        load_before = os.getloadavg()
        cold, cpu, values = whole_process(work, args, env)
        check_values(values)
        warm_times = warm(work, args.runs, args.warm_images)
        loads = load_line(load_before, os.getloadavg())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = markdown(args, sizes, cold, cpu, warm_times, loads)
    print(section)
    if not args.no_write:
        write_section(section)


if __name__ == "__main__":
    main()
