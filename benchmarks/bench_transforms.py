"""Benchmark the stage-1 train transforms after decoding, one by one: where a sample's CPU time goes once the
images come from memory instead of PNG files.

    python benchmarks/bench_transforms.py [--size 1080 1440] [--passes 10] [--baseline REF] [--write]

Decodes a synthetic set of `--size` images once, then runs CropAroundUnknown, Flip, Resize, GenerateTrimap,
PackInputs and collate on each sample `--passes` times (sample i with `RandomState(i)`, as the engine seeds it)
and reports each step's median. OpenCV runs on one thread (`--opencv-threads`), so the numbers are CPU time,
not how many cores a step spreads over. With `--baseline REF` the transforms of git revision REF run too,
interleaved sample by sample, and the two batches and random states must come out identical.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
STAGE1 = ROOT / "configs" / "dim" / "dim_stage1-v16_1xb1-1000k_comp1k.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
from hostinfo import cpu_line, load_line  # noqa: E402
from results_file import write_section  # noqa: E402


def decoded_samples(root: Path) -> tuple[list[dict], list[dict]]:
    """Every sample of the set after its LoadImageFromFile steps, and the config's remaining steps."""
    from dimatting import config, registry
    from dimatting.data.transforms import LoadImageFromFile

    cfg = config.Config.fromfile(STAGE1)
    cfg.train_dataloader.dataset.data_root = str(root)
    dataset = registry.build_dataset(cfg.train_dataloader.dataset)
    loads = [step for step in dataset.pipeline if isinstance(step, LoadImageFromFile)]
    samples = []
    for index in range(len(dataset)):
        results = dataset.get_data_info(index)
        for load in loads:
            results = load(results)
        samples.append(results)
    return samples, [dict(step) for step in cfg.train_dataloader.dataset.pipeline[len(loads) :]]


def transforms_at(ref: str) -> ModuleType:
    """`dimatting.data.transforms` as of git revision `ref`, imported under another name."""
    source = subprocess.run(["git", "show", f"{ref}:src/dimatting/data/transforms.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_transforms.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_transforms", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(module: ModuleType, steps: list[dict]) -> list:
    return [getattr(module, step["type"])(**{k: v for k, v in step.items() if k != "type"}) for step in steps]


def run(module: ModuleType, pipeline: list, sample: dict, seed: int, times: dict) -> tuple[dict, tuple]:
    """One sample through `pipeline` and `module.collate`, each step's seconds appended to `times`."""
    results, rng, total = dict(sample), np.random.RandomState(seed), 0.0
    for step in [*pipeline, None]:
        tick = time.perf_counter()
        results = step(results, rng) if step else module.collate([results])
        took = time.perf_counter() - tick
        times[type(step).__name__ if step else "collate"].append(took)
        total += took
    times["total"].append(total)
    return results, rng.get_state()


def assert_same(a: tuple[dict, tuple], b: tuple[dict, tuple]) -> None:
    """Same batch tensors (values, dtypes, strides), same metainfo and the same random state after."""
    (batch_a, state_a), (batch_b, state_b) = a, b
    assert np.array_equal(state_a[1], state_b[1]) and state_a[2:] == state_b[2:], "random states differ"
    fields_a = {"inputs": batch_a["inputs"], **batch_a["data_samples"]}
    fields_b = {"inputs": batch_b["inputs"], **batch_b["data_samples"]}
    assert fields_a.keys() == fields_b.keys(), "fields differ"
    for key, value in fields_a.items():
        other = fields_b[key]
        if isinstance(value, torch.Tensor):
            same = value.dtype == other.dtype and value.stride() == other.stride() and torch.equal(value, other)
        else:
            same = repr(value) == repr(other)
        assert same, f"{key} differs"


def measure(samples: list[dict], steps: list[dict], passes: int, baseline: str | None) -> dict[str, dict]:
    """Per-step median seconds for this tree's transforms (and the baseline's), interleaved by sample."""
    from dimatting.data import transforms

    modules = {"this tree": transforms} | ({f"at {baseline}": transforms_at(baseline)} if baseline else {})
    pipelines = {name: build(module, steps) for name, module in modules.items()}
    times = {name: collections.defaultdict(list) for name in modules}
    for number in range(passes):
        for seed, sample in enumerate(samples):
            names = list(modules) if (number + seed) % 2 == 0 else list(modules)[::-1]
            outputs = [run(modules[name], pipelines[name], sample, seed, times[name]) for name in names]
            if number == 0 and len(outputs) == 2:
                assert_same(*outputs)
    return {name: {step: statistics.median(seconds) for step, seconds in by_step.items()}
            for name, by_step in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[1080, 1440], metavar=("H", "W"))
    parser.add_argument("--passes", type=int, default=10, help="times each of the 16 samples runs")
    parser.add_argument("--opencv-threads", type=int, default=1)
    parser.add_argument("--baseline", metavar="REF", help="also time the transforms of this git revision")
    parser.add_argument("--write", action="store_true", help="replace the '## Train transforms' section of results.md")
    args = parser.parse_args()
    from dimatting.data.synthetic import make_synthetic

    cv2.setNumThreads(args.opencv_threads)
    torch.set_num_threads(1)
    before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        height, width = args.size
        make_synthetic(tmp, n_train=16, n_test=0, seed=0, size=(height, width), nproc=os.cpu_count() or 1)
        samples, steps = decoded_samples(Path(tmp))
    medians = measure(samples, steps, args.passes, args.baseline)
    names = list(medians)
    command = " ".join(["python benchmarks/bench_transforms.py", *sys.argv[1:]]).replace(" --write", "")
    lines = [
        "## Train transforms",
        "",
        f"`{command}` on {cpu_line()}; {load_line(before, os.getloadavg())}. Stage-1 train pipeline after "
        f"decoding, synthetic {height}x{width} images, OpenCV on {args.opencv_threads} thread(s); median ms per "
        f"sample over {args.passes} passes of 16 samples"
        + (", the two versions interleaved; their batches and random states are identical." if args.baseline
           else "."),
        "",
        "| step | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        *(f"| {step} | " + " | ".join(f"{medians[name][step] * 1e3:.2f}" for name in names) + " |"
          for step in medians[names[0]]),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
