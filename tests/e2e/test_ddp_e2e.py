"""Two CPU processes (torchrun, gloo) through tools/dist_train.sh and tools/dist_test.sh.

Distributed testing must give exactly the single-process numbers: each rank scores every second image and
the per-image results are gathered and put back in dataset order (3 test images: an uneven split).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from dimatting.data.synthetic import make_synthetic
from tests.e2e.helpers import CONFIGS, STAGES, TOOLS, loss_records, run_tool, tiny_stage_options
from tests.http_server import FileServer

pytestmark = pytest.mark.slow
CONFIG = CONFIGS / f"{STAGES[0]}.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist(script: str, *args: object, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "PORT": str(_free_port()), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([str(TOOLS / script), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"{script} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def test_two_process_training_and_testing_match_one_process(tmp_path: Path) -> None:
    make_synthetic(tmp_path / "data" / "tiny", n_train=4, n_test=3, seed=0, size=(64, 64))
    options = tiny_stage_options("data/tiny")
    proc = _dist("dist_train.sh", CONFIG, 2, "--cfg-options", *options, cwd=tmp_path)
    work_dir = tmp_path / "work_dirs" / STAGES[0]
    log = next(work_dir.glob("*/*.log")).read_text()
    assert "World size: 2" in log and "Iter(train) [2/2]" in log and "Iter(val) [3/3]" in log
    assert proc.stdout.count("Iter(train) [2/2]") == 1, "only rank 0 logs"
    checkpoint = work_dir / "iter_2.pth"
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt["dimatting"]["samples_seen"] == 2 * 2  # batch 1 x 2 ranks x 2 iterations

    run_tool("test.py", CONFIG, checkpoint, "--out", tmp_path / "one.json", "--cfg-options", *options,
             cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    with FileServer(work_dir) as server:  # the checkpoint as a URL: one rank downloads it, the other waits
        _dist("dist_test.sh", CONFIG, server.url(checkpoint.name), 2, "--out", tmp_path / "two.json",
              "--cfg-options", *options, cwd=tmp_path, env={"TORCH_HOME": str(tmp_path / "torch_home")})
        assert server.hits(checkpoint.name) == 1
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert one["n"] == 3 and list(one["images"]) == list(two["images"])
    assert one == two

    # stage 2 under DDP: chained from stage 1, the frozen encoder-decoder gets no gradients on any rank
    _dist("dist_train.sh", CONFIGS / f"{STAGES[1]}.py", 2, "--cfg-options", *options, cwd=tmp_path)
    stage2 = torch.load(tmp_path / "work_dirs" / STAGES[1] / "iter_2.pth", weights_only=True)["state_dict"]
    stage1 = torch.load(work_dir / "best_SAD_iter_2.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(v, stage2[k]) for k, v in stage1.items())
    assert len(stage2) == 50


def test_two_process_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """DDP resume: 2 ranks stop at iteration 2 and resume to 4; losses and weights equal a straight 4-iteration
    run's bit for bit (each rank's data stream restarts at its global sample number, Adam state restored)."""
    make_synthetic(tmp_path / "data" / "tiny", n_train=4, n_test=3, seed=0, size=(64, 64))
    options = [*tiny_stage_options("data/tiny", max_iters=4), "default_hooks.checkpoint.interval=2",
               "train_cfg.val_interval=1000"]
    _dist("dist_train.sh", CONFIG, 2, "--work-dir", "straight", "--cfg-options", *options, cwd=tmp_path)
    _dist("dist_train.sh", CONFIG, 2, "--work-dir", "resumed", "--cfg-options", *options, "train_cfg.max_iters=2",
          cwd=tmp_path)
    _dist("dist_train.sh", CONFIG, 2, "--work-dir", "resumed", "--resume", "--cfg-options", *options, cwd=tmp_path)
    straight, resumed = loss_records(tmp_path / "straight"), loss_records(tmp_path / "resumed")
    assert [r["iter"] for r in resumed] == [1, 2, 3, 4] and resumed == straight
    final = [torch.load(tmp_path / run / "iter_4.pth", weights_only=True) for run in ("straight", "resumed")]
    assert final[1]["meta"]["iter"] == 4 and final[1]["dimatting"]["samples_seen"] == 4 * 2
    assert all(torch.equal(v, final[1]["state_dict"][k]) for k, v in final[0]["state_dict"].items())
