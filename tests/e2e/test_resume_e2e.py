"""Exact resume: a run killed with SIGKILL and resumed logs the same losses, bit for bit, as one that was not.

Run A trains 8 iterations uninterrupted (num_workers=0). Run B (num_workers=2, so also a different worker
layout) is killed between checkpoints (after iteration 4; the last checkpoint is iter_3), resumed with
`--resume`, killed again right after iter_6.pth is written, and resumed with `--resume <iter_6.pth>`.
Every loss B ever logged, including the iterations it redid after a kill, must equal A's, and the final
weights must be identical.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.e2e.helpers import (
    QUICKSTART,
    loss_records,
    loss_records_of,
    run_tool,
    tiny_quickstart_options,
    tool_command,
)

pytestmark = pytest.mark.slow
MAX_ITERS = 8


def _train_until_killed(cwd: Path, work_dir: Path, options: list[str], done, extra: tuple = ()) -> None:
    """Start training and SIGKILL it (its whole process group: workers too) as soon as `done()` holds."""
    log = open(cwd / f"run_{time.monotonic_ns()}.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        tool_command("train.py", QUICKSTART, "--work-dir", work_dir, *extra, "--cfg-options", *options),
        cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not done():
            assert proc.poll() is None, f"training ended before it could be killed: {(cwd / log.name).read_text()}"
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path: Path) -> None:
    options_a = tiny_quickstart_options(MAX_ITERS, workers=0)
    options_b = tiny_quickstart_options(MAX_ITERS, workers=2)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    run_tool("train.py", QUICKSTART, "--work-dir", run_a, "--cfg-options", *options_a, cwd=tmp_path)
    reference = {r["iter"]: r for r in loss_records(run_a)}
    assert sorted(reference) == list(range(1, MAX_ITERS + 1))

    # kill between checkpoints: iteration 4 logged, last checkpoint iter_3
    _train_until_killed(tmp_path, run_b, options_b, lambda: any(r["iter"] >= 4 for r in loss_records(run_b)))
    assert (run_b / "iter_3.pth").is_file() and not (run_b / f"iter_{MAX_ITERS}.pth").exists()
    # resume from last_checkpoint, kill right after the next checkpoint is written
    _train_until_killed(tmp_path, run_b, options_b, lambda: (run_b / "iter_6.pth").is_file(), ("--resume",))
    assert not (run_b / f"iter_{MAX_ITERS}.pth").exists()
    # resume from an explicit checkpoint to the end
    run_tool("train.py", QUICKSTART, "--work-dir", run_b, "--resume", run_b / "iter_6.pth",
             "--cfg-options", *options_b, cwd=tmp_path)

    records = loss_records(run_b)
    assert len(records) > MAX_ITERS, "nothing was redone: the kills did not interrupt the run"
    assert {r["iter"] for r in records} == set(reference)
    runs = sorted(run_b.glob("*/vis_data/train_losses.json"))
    for number, run in enumerate(runs, 1):  # which run differs: the first, or one resumed after a kill
        for record in loss_records_of(run):
            assert record == reference[record["iter"]], (
                f"iteration {record['iter']} differs in run {number} of {len(runs)} ({run.parent.parent.name}); "
                f"every record of run B: {records}"
            )

    final_a = torch.load(run_a / f"iter_{MAX_ITERS}.pth", weights_only=True)
    final_b = torch.load(run_b / f"iter_{MAX_ITERS}.pth", weights_only=True)
    assert final_a["meta"]["seed"] == final_b["meta"]["seed"] == 0
    assert final_a["state_dict"].keys() == final_b["state_dict"].keys()
    for key, value in final_a["state_dict"].items():
        assert torch.equal(value, final_b["state_dict"][key]), key
