"""Helpers for the end-to-end runs: the real `tools/*.py` in a subprocess, in a temporary working directory.

Stage chaining and the quickstart's data folder are relative to the current directory (as the reference's
./work_dirs), so every run gets its own cwd and nothing is written into the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
CONFIGS = REPO / "configs" / "dim"
QUICKSTART = CONFIGS / "dim_quickstart.py"
STAGES = (
    "dim_stage1-v16_1xb1-1000k_comp1k",
    "dim_stage2-v16-pln_1xb1-1000k_comp1k",
    "dim_stage3-v16-pln_1xb1-1000k_comp1k",
)


def tiny_quickstart_options(max_iters: int, size: int = 64, workers: int = 0) -> list[str]:
    """--cfg-options that shrink the quickstart to a few iterations on 64 px crops of a 6-image set."""
    return [
        "quickstart.synthetic.n_train=6",
        "quickstart.synthetic.n_test=2",
        f"quickstart.synthetic.size=({size},{size})",
        "quickstart.test=False",
        f"train_dataloader.dataset.pipeline.4.crop_sizes=[{size}]",
        f"train_dataloader.dataset.pipeline.6.scale=({size},{size})",
        "train_dataloader.dataset.pipeline.7.kernel_size=(1,5)",
        "train_dataloader.batch_size=2",
        f"train_dataloader.num_workers={workers}",
        f"train_cfg.max_iters={max_iters}",
        "train_cfg.val_interval=1000",
        "default_hooks.logger.interval=2",
        "default_hooks.checkpoint.interval=3",
        "default_hooks.checkpoint.max_keep_ckpts=-1",
    ]


def tiny_stage_options(data_root: str, max_iters: int = 2, size: int = 64) -> list[str]:
    """--cfg-options that run a seed config for a few iterations on a tiny synthetic set, from scratch."""
    options = [
        "model.backbone.encoder.init_cfg=None",
        f"train_dataloader.dataset.pipeline.4.crop_sizes=[{size}]",
        f"train_dataloader.dataset.pipeline.6.scale=({size},{size})",
        "train_dataloader.dataset.pipeline.7.kernel_size=(1,5)",
        "train_dataloader.num_workers=0",
        "val_dataloader.num_workers=0",
        f"train_cfg.max_iters={max_iters}",
        f"train_cfg.val_interval={max_iters}",
        f"default_hooks.checkpoint.interval={max_iters}",
        "randomness.seed=0",
    ]
    options += [f"{split}_dataloader.dataset.data_root={data_root}" for split in ("train", "val", "test")]
    return options


def tool_command(tool: str, *args: str) -> list[str]:
    return [sys.executable, str(TOOLS / tool), *map(str, args)]


def run_tool(tool: str, *args: str, cwd: Path, timeout: float = 300, check: bool = True,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run tools/<tool> with `args` in `cwd`; fail the test with its output when it exits non-zero."""
    proc = subprocess.run(tool_command(tool, *args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        pytest.fail(f"{tool} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def loss_records(work_dir: Path) -> list[dict]:
    """Every per-iteration loss record of every run (first and resumed) in a work dir, in run order."""
    records: list[dict] = []
    for path in sorted(work_dir.glob("*/vis_data/train_losses.json")):
        records += loss_records_of(path)
    return records


def loss_records_of(path: Path) -> list[dict]:
    """The per-iteration loss records of one run's `vis_data/train_losses.json`."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
