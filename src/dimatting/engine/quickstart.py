"""The quickstart's extras, kept out of the engine: its synthetic data, and the trivial-matte baseline.

A config's top-level `quickstart` dict (only `configs/dim/dim_quickstart.py` has one) asks for two things:
`synthetic=dict(n_train, n_test, size, seed)` writes the synthetic Comp-1k-layout set when its annotation
file is missing, and `test=True` tests the best checkpoint after training. The baseline says whether a
network learned anything: the SAD of the trivial matte (0/1 on the known trimap, 0.5 in the unknown region)
and our SAD's ratio to it; the quickstart must end at or below `TARGET`. `TimeCheck` says, a few iterations
in, how long the whole quickstart will take on this machine, and how to shorten it when that is over `BUDGET`.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psutil

from dimatting.engine import dist

if TYPE_CHECKING:
    from dimatting.engine.trainer import EarlyTiming

logger = logging.getLogger("dimatting")

CONFIG_KEY = "quickstart"
TARGET = 0.7  # the quickstart must end with SAD <= 0.7x that of the alpha = 0.5 matte
BUDGET = 600.0  # seconds: the quickstart promises to end within 10 minutes on a 2-core CPU
FORWARD_SHARE = 1 / 3  # a forward pass costs about a third of forward + backward (same pixels)


def settings(cfg: dict) -> dict:
    """The config's `quickstart` dict ({} for every other config)."""
    return dict(cfg.get(CONFIG_KEY) or {})


def prepare_data(cfg: dict, launcher: str) -> None:
    """Write the synthetic set of `quickstart.synthetic` if the training annotation file is missing."""
    synthetic = settings(cfg).get("synthetic")
    if not synthetic:
        return
    from dimatting.data.synthetic import make_synthetic

    dataset = cfg["train_dataloader"]["dataset"]
    root = Path(dataset.get("data_root", "."))
    info = dist.init_distributed(launcher, cfg.get("env_cfg", {}).get("dist_cfg"))
    if info.is_main and not (root / dataset["ann_file"]).is_file():
        print(f"Making the synthetic dataset in {root} (first run only)", flush=True)
        make_synthetic(root, int(synthetic["n_train"]), int(synthetic["n_test"]), seed=int(synthetic.get("seed", 0)),
                       size=tuple(synthetic.get("size", (320, 320))))
    dist.barrier()


def trivial_alpha(trimap: np.ndarray) -> np.ndarray:
    """The matte of a network that learned nothing: 0/1 on the known trimap, 0.5 in the unknown region."""
    return np.where(trimap == 255, 1.0, np.where(trimap == 0, 0.0, 0.5)).astype(np.float64)


def verdict(sad: float, baseline_sad: float, is_quickstart: bool) -> str:
    """`SAD a vs b for alpha=0.5 in the unknown region: ratio r` (+ PASS/FAIL against `TARGET` for the quickstart)."""
    ratio = sad / baseline_sad if baseline_sad else float("nan")
    target = f" (target <= {TARGET}: {'PASS' if ratio <= TARGET else 'FAIL'})" if is_quickstart else ""
    return f"SAD {sad:.4f} vs {baseline_sad:.4f} for alpha=0.5 in the unknown region: ratio {ratio:.3f}{target}"


class TimeCheck:
    """Called by the trainer after its first iterations: logs the quickstart's whole expected time (what has
    run since the process started, the rest of training, and the validations and test, each image a forward
    pass costed from the measured training speed) and warns, naming the option, when it exceeds `BUDGET`."""

    def __init__(self, cfg: dict, started: float | None = None) -> None:
        synthetic = settings(cfg).get("synthetic") or {}
        height, width = synthetic.get("size", (320, 320))
        self.eval_pixels = int(synthetic.get("n_test", 0)) * int(height) * int(width)
        self.tests = 1 if settings(cfg).get("test") else 0
        self.started = psutil.Process().create_time() if started is None else started  # wall clock, seconds

    def total(self, timing: EarlyTiming) -> float:
        per_eval = self.eval_pixels / timing.pixels_per_iter * FORWARD_SHARE * timing.seconds_per_iter
        training = timing.iterations_left * timing.seconds_per_iter
        return time.time() - self.started + training + (timing.validations_left + self.tests) * per_eval

    def __call__(self, timing: EarlyTiming) -> None:
        total = self.total(timing)
        logger.info("Quickstart: about %s in total on this machine (%.2f s per training iteration)",
                    _minutes(total), timing.seconds_per_iter)
        if total > BUDGET:
            fixed = total - timing.iterations_left * timing.seconds_per_iter
            done = timing.iterations_done
            fits = done + math.floor(max(BUDGET - fixed, 0) / timing.seconds_per_iter)
            logger.warning("Quickstart: that is more than %s on this CPU; for a shorter run (and a less trained "
                           "model) use --cfg-options train_cfg.max_iters=%d", _minutes(BUDGET), max(fits, done + 1))


def _minutes(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s"
