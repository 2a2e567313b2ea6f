"""Benchmark the training data loader on Comp-1k-sized images: per sample, and as a DataLoader feeds batches.

    python benchmarks/bench_loader.py [--size 1080 1440] [--images 16] [--samples 32] [--workers 0 2]
                                      [--batches 1 16] [--write]

The stage-1 train pipeline (load alpha/fg/bg/merged PNGs, crop around the unknown region, flip, resize to
320², trimap, pack) on a synthetic set of `--images` images of `--size`. Rows:
- one sample in the main process: its four files decoded one by one (the reference's way), at once in
  threads (ours, and our first epoch), or read from the decode-once cache (ours after the first epoch),
  median of `--samples`;
- samples per second of a `DataLoader` (the engine's sampler, collate and batch threads) for each
  `--workers` and `--batches`, decoding every time or from a warm cache, over `--samples` samples (at least
  two batches) after the first batch. A GPU step of 10-15 ms at batch 1 needs 70-100 samples/s; 30-60 ms at
  batch 16 needs 270-530.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from hostinfo import cpu_line, load_line  # noqa: E402
from results_file import write_section  # noqa: E402

from dimatting.data.decoded_cache import DecodedCache  # noqa: E402

STAGE1 = ROOT / "configs" / "dim" / "dim_stage1-v16_1xb1-1000k_comp1k.py"


def dataset(root: Path):
    from dimatting import config, registry

    cfg = config.Config.fromfile(STAGE1)
    cfg.train_dataloader.dataset.data_root = str(root)
    return registry.build_dataset(cfg.train_dataloader.dataset)


def per_sample(root: Path, samples: int, threaded: bool, cache: DecodedCache | None = None) -> float:
    """Median seconds for one sample in this process."""
    from dimatting.engine.sampler import InfiniteSeededSampler

    data = dataset(root)
    data.use_decoded_cache(cache)
    if not threaded:
        data._threads = lambda: 1  # the files one after another
    stream = iter(InfiniteSeededSampler(len(data), seed=0))
    data[next(stream)]
    times = []
    for _ in range(samples):
        item = next(stream)
        tick = time.perf_counter()
        data[item]
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def warm(root: Path, cache: DecodedCache) -> None:
    """Decode every image of the set into `cache` (what the first epoch does)."""
    data = dataset(root)
    data.use_decoded_cache(cache)
    for index in range(len(data)):
        data[index]


def loader_rate(root: Path, samples: int, workers: int, batch: int, cache: DecodedCache | None) -> float:
    """Samples per second of a DataLoader with `workers` processes, after its first batch."""
    from torch.utils.data import DataLoader

    from dimatting.data import collate
    from dimatting.engine.sampler import InfiniteSeededSampler

    data = dataset(root)
    data.use_decoded_cache(cache)
    loader = DataLoader(data, batch_size=batch, sampler=InfiniteSeededSampler(len(data), seed=0),
                        num_workers=workers, collate_fn=collate)
    batches = iter(loader)
    next(batches)
    count = max(2, -(-samples // batch))
    tick = time.perf_counter()
    for _ in range(count):
        next(batches)
    return count * batch / (time.perf_counter() - tick)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[1080, 1440], metavar=("H", "W"))
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--write", action="store_true", help="replace the '## Data loader' section of results.md")
    args = parser.parse_args()
    from dimatting.data.synthetic import make_synthetic

    before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        height, width = args.size
        root = Path(tmp) / "data"
        make_synthetic(root, n_train=args.images, n_test=0, seed=0, size=(height, width), nproc=os.cpu_count() or 1)
        cache = DecodedCache.open(Path(tmp) / "cache", max_bytes=2**40, min_free_bytes=0)
        sequential = per_sample(root, args.samples, threaded=False)
        threaded = per_sample(root, args.samples, threaded=True)
        warm(root, cache)
        cached = per_sample(root, args.samples, threaded=True, cache=cache)
        rates = {(w, b, c): loader_rate(root, args.samples, w, b, cache if c else None)
                 for b in args.batches for w in args.workers for c in (False, True)}
    lines = [
        "## Data loader",
        "",
        f"`python benchmarks/bench_loader.py --size {height} {width} --images {args.images} --samples "
        f"{args.samples}` on {cpu_line()}; {load_line(before, os.getloadavg())}. Stage-1 train pipeline on "
        f"synthetic {height}x{width} PNGs.",
        "",
        "| what | result |",
        "|---|---|",
        f"| one sample, files decoded one by one (the reference's way) | {sequential * 1e3:.1f} ms |",
        f"| one sample, files decoded at once in threads (ours, first epoch) | {threaded * 1e3:.1f} ms "
        f"({sequential / threaded:.2f}x) |",
        f"| one sample, from the decode-once cache (ours, later epochs) | {cached * 1e3:.1f} ms "
        f"({sequential / cached:.2f}x) |",
        *(f"| DataLoader, {w} workers, batch {b}, {'decode-once cache' if c else 'decoding'} | {r:.1f} samples/s |"
          for (w, b, c), r in rates.items()),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
