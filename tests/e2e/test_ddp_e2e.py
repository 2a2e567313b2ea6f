"""Two CPU processes (gloo) through tools/dist_train.sh and tools/dist_test.sh (torchrun), as two nodes, and
through tools/slurm_train.sh and slurm_test.sh (srun).

Distributed testing must give exactly the single-process numbers: each rank scores every second image and
the per-image results are gathered and put back in dataset order (3 test images: an uneven split).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
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


def _launch(cmd: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "OMP_NUM_THREADS": "1",
                                               **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(*procs: subprocess.Popen) -> list[int]:
    outputs = [proc.communicate(timeout=300) for proc in procs]
    codes = [proc.returncode for proc in procs]
    if any(codes):
        pytest.fail(f"exit codes {codes}\n" + "\n".join(out[-3000:] for out, _ in outputs))
    return codes


def _fake_srun(bin_dir: Path) -> None:
    """An `srun` for a machine without SLURM: starts --ntasks copies of the command on this host with the
    variables srun sets (SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS, SLURM_NTASKS_PER_NODE, SLURM_NODELIST)."""
    bin_dir.mkdir()
    script = bin_dir / "srun"
    script.write_text(
        "#!" + sys.executable + "\n"
        "import os, subprocess, sys\n"
        "args, opts = sys.argv[1:], {}\n"
        "while args and args[0].startswith('-'):\n"
        "    flag = args.pop(0)\n"
        "    key, _, value = flag.partition('=')\n"
        "    opts[key] = value if value else args.pop(0) if key == '-p' else ''\n"
        "n, per_node = int(opts['--ntasks']), int(opts['--ntasks-per-node'])\n"
        "env = dict(os.environ, SLURM_NTASKS=str(n), SLURM_NTASKS_PER_NODE=str(per_node),\n"
        "           SLURM_NODELIST='localhost', SLURM_JOB_NAME=opts['--job-name'])\n"
        "procs = [subprocess.Popen(args, env=dict(env, SLURM_PROCID=str(i), SLURM_LOCALID=str(i % per_node)))\n"
        "         for i in range(n)]\n"
        "sys.exit(max(p.wait() for p in procs))\n"
    )
    script.chmod(0o755)


def test_two_nodes_and_slurm_match_one_node_with_two_processes(tmp_path: Path) -> None:
    """2 nodes x 1 process (torchrun with NNODES=2 on localhost) and 2 srun tasks (tools/slurm_train.sh, with a
    stand-in srun) end bit-identical to 1 node x 2 processes; slurm_test.sh scores like one process."""
    make_synthetic(tmp_path / "data" / "tiny", n_train=4, n_test=3, seed=0, size=(64, 64))
    options = [*tiny_stage_options("data/tiny", max_iters=3), "train_cfg.val_interval=1000"]
    _dist("dist_train.sh", CONFIG, 2, "--work-dir", "one_node", "--cfg-options", *options, cwd=tmp_path)
    port = str(_free_port())
    nodes = [_launch([str(TOOLS / "dist_train.sh"), str(CONFIG), "1", "--work-dir", "two_nodes", "--cfg-options",
                      *options], tmp_path, {"NNODES": "2", "NODE_RANK": str(rank), "PORT": port,
                                            "MASTER_ADDR": "127.0.0.1"}) for rank in (0, 1)]
    _finish(*nodes)
    _fake_srun(tmp_path / "bin")
    slurm_env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "MASTER_PORT": str(_free_port()),
                 "GPUS": "2", "GPUS_PER_NODE": "2"}
    _finish(_launch([str(TOOLS / "slurm_train.sh"), "partition", "dim", str(CONFIG), "slurm", "--cfg-options",
                     *options], tmp_path, slurm_env))
    one_node = loss_records(tmp_path / "one_node")
    assert [r["iter"] for r in one_node] == [1, 2, 3]
    for run in ("two_nodes", "slurm"):
        assert loss_records(tmp_path / run) == one_node, run
        log = next((tmp_path / run).glob("*/*.log")).read_text()
        assert "World size: 2" in log
        final = torch.load(tmp_path / run / "iter_3.pth", weights_only=True)["state_dict"]
        reference = torch.load(tmp_path / "one_node" / "iter_3.pth", weights_only=True)["state_dict"]
        assert all(torch.equal(v, final[k]) for k, v in reference.items()), run

    checkpoint = tmp_path / "one_node" / "iter_3.pth"
    slurm_env["MASTER_PORT"] = str(_free_port())
    _dist("dist_test.sh", CONFIG, checkpoint, 2, "--out", tmp_path / "torchrun.json", "--cfg-options", *options,
          cwd=tmp_path)
    _finish(_launch([str(TOOLS / "slurm_test.sh"), "partition", "dim", str(CONFIG), str(checkpoint), "--out",
                     str(tmp_path / "slurm.json"), "--cfg-options", *options], tmp_path, slurm_env))
    assert json.loads((tmp_path / "slurm.json").read_text()) == json.loads((tmp_path / "torchrun.json").read_text())


def test_sigterm_on_one_rank_stops_every_rank_at_the_same_iteration(tmp_path: Path) -> None:
    """A signal that reaches one rank only (rank 1 here) stops both after the same iteration with a checkpoint;
    --resume then ends bit-identical to an uninterrupted 2-process run."""
    make_synthetic(tmp_path / "data" / "tiny", n_train=4, n_test=3, seed=0, size=(64, 64))
    options = [*tiny_stage_options("data/tiny", max_iters=8), "default_hooks.checkpoint.interval=100",
               "train_cfg.val_interval=1000"]
    _dist("dist_train.sh", CONFIG, 2, "--work-dir", "straight", "--cfg-options", *options, cwd=tmp_path)
    proc = _launch([str(TOOLS / "dist_train.sh"), str(CONFIG), "2", "--work-dir", "stopped", "--cfg-options",
                    *options], tmp_path, {"PORT": str(_free_port())})
    deadline = time.monotonic() + 240
    while not any(r["iter"] >= 2 for r in loss_records(tmp_path / "stopped")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.02)
    rank1 = next(p for p in psutil.Process(proc.pid).children(recursive=True)
                 if p.environ().get("RANK") == "1" and "train.py" in " ".join(p.cmdline()))
    rank1.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0
    (stopped,) = sorted((tmp_path / "stopped").glob("iter_*.pth"))
    iteration = int(stopped.stem.split("_")[1])
    assert 2 <= iteration < 8
    assert f"training stopped by SIGTERM at iteration {iteration}; checkpoint saved to " in output
    _dist("dist_train.sh", CONFIG, 2, "--work-dir", "stopped", "--resume", "--cfg-options", *options, cwd=tmp_path)
    straight, resumed = loss_records(tmp_path / "straight"), loss_records(tmp_path / "stopped")
    assert [r["iter"] for r in resumed] == list(range(1, 9)) and resumed == straight
    final = [torch.load(tmp_path / run / "iter_8.pth", weights_only=True)["state_dict"] for run in ("straight",
                                                                                                    "stopped")]
    assert all(torch.equal(v, final[1][k]) for k, v in final[0].items())
