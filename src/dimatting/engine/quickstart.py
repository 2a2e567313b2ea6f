"""The quickstart's extras, kept out of the engine: its synthetic data, and the trivial-matte baseline.

A config's top-level `quickstart` dict (only `configs/dim/dim_quickstart.py` has one) asks for two things:
`synthetic=dict(n_train, n_test, size, seed)` writes the synthetic Comp-1k-layout set when its annotation
file is missing, and `test=True` tests the best checkpoint after training. The baseline says whether a
network learned anything: the SAD of the trivial matte (0/1 on the known trimap, 0.5 in the unknown region)
and our SAD's ratio to it; the quickstart must end at or below `TARGET`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dimatting.engine import dist

logger = logging.getLogger("dimatting")

CONFIG_KEY = "quickstart"
TARGET = 0.7  # the quickstart must end with SAD <= 0.7x that of the alpha = 0.5 matte


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
