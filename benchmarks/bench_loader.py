"""Benchmark the training data loader on Comp-1k-sized images: per sample, and as a DataLoader feeds batches.

    python benchmarks/bench_loader.py [--size 1080 1440] [--samples 24] [--workers 0 1 2] [--write]

The stage-1 train pipeline (load alpha/fg/bg/merged PNGs, crop around the unknown region, flip, resize to
320², trimap, pack) on a synthetic set of `--size` images. Rows:
- one sample in the main process, its four files decoded one by one (the reference's way) or at once in
  threads (ours), median of `--samples`;
- samples per second of a `DataLoader` (batch 1, the engine's sampler and collate) for each `--workers`,
  ours, over `--samples` samples after the workers' start. A GPU step of 10-15 ms at batch 1 needs 70-100
  samples/s; compare with the machine's cores (each worker can use up to 4 of them).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.md"
STAGE1 = ROOT / "configs" / "dim" / "dim_stage1-v16_1xb1-1000k_comp1k.py"


def dataset(root: Path):
    from dimatting import config, registry

    cfg = config.Config.fromfile(STAGE1)
    cfg.train_dataloader.dataset.data_root = str(root)
    return registry.build_dataset(cfg.train_dataloader.dataset)


def per_sample(root: Path, samples: int, threaded: bool) -> float:
    """Median seconds for one sample in this process."""
    from dimatting.engine.sampler import InfiniteSeededSampler

    data = dataset(root)
    if not threaded:
        data._load_threads = lambda: 1  # the files one after another
    stream = iter(InfiniteSeededSampler(len(data), seed=0))
    data[next(stream)]
    times = []
    for _ in range(samples):
        item = next(stream)
        tick = time.perf_counter()
        data[item]
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def loader_rate(root: Path, samples: int, workers: int) -> float:
    """Samples per second of a DataLoader with `workers` processes, after its first batch."""
    from torch.utils.data import DataLoader

    from dimatting.data import collate
    from dimatting.engine.sampler import InfiniteSeededSampler

    data = dataset(root)
    loader = DataLoader(data, batch_size=1, sampler=InfiniteSeededSampler(len(data), seed=0), num_workers=workers,
                        collate_fn=collate)
    batches = iter(loader)
    next(batches)
    tick = time.perf_counter()
    for _ in range(samples):
        next(batches)
    return samples / (time.perf_counter() - tick)


def cpu_name() -> str:
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.*)", info)
        found = re.search(r"flags\s*:\s*(.*)", info)
        wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if found and f in found.group(1).split()]
        flags = f"{model.group(1) if model else platform.processor()} ({', '.join(wanted)})"
    except OSError:
        flags = platform.processor()
    return flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[1080, 1440], metavar=("H", "W"))
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--write", action="store_true", help="replace the '## Data loader' section of results.md")
    args = parser.parse_args()
    from dimatting.data.synthetic import make_synthetic

    load = [f"{os.getloadavg()[0]:.2f}"]
    with tempfile.TemporaryDirectory() as tmp:
        height, width = args.size
        make_synthetic(tmp, n_train=16, n_test=0, seed=0, size=(height, width), nproc=os.cpu_count() or 1)
        sequential = per_sample(Path(tmp), args.samples, threaded=False)
        threaded = per_sample(Path(tmp), args.samples, threaded=True)
        rates = {w: loader_rate(Path(tmp), args.samples, w) for w in args.workers}
    load.append(f"{os.getloadavg()[0]:.2f}")
    lines = [
        "## Data loader",
        "",
        f"`python benchmarks/bench_loader.py --size {height} {width} --samples {args.samples}` on {cpu_name()}, "
        f"{os.cpu_count()} cores; load average before/after: {' / '.join(load)}. Stage-1 train pipeline on "
        f"synthetic {height}x{width} PNGs.",
        "",
        "| what | result |",
        "|---|---|",
        f"| one sample, files decoded one by one (the reference's way) | {sequential * 1e3:.0f} ms |",
        f"| one sample, files decoded at once in threads (ours) | {threaded * 1e3:.0f} ms "
        f"({sequential / threaded:.2f}x) |",
        *(f"| DataLoader, {w} workers, batch 1 | {r:.1f} samples/s |" for w, r in rates.items()),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        old = RESULTS.read_text()
        pattern = re.compile(r"^## Data loader\n.*?(?=^## |\Z)", re.S | re.M)
        RESULTS.write_text(pattern.sub(text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    main()
