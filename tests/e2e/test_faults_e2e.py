"""What a long run meets on a cluster, end to end on the CPU with synthetic data: preemption by SIGTERM, a
truncated newest checkpoint, `last_checkpoint` naming a missing file, a full disk while saving, and a sample
that goes bad after start-up. Each ends in one clear line, and the run continues bit for bit with --resume.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from dimatting.engine import trainer
from dimatting.engine.launch import train_main
from tests.e2e.helpers import QUICKSTART, loss_records, run_tool, tiny_quickstart_options, tool_command

pytestmark = pytest.mark.slow
MAX_ITERS = 8


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(v, wb[k]) for k, v in wa.items())


def _sigterm_when(cwd: Path, work_dir: Path, options: list[str], iteration: int) -> subprocess.CompletedProcess:
    """Train and send SIGTERM to the whole process group (as SLURM does: data workers too) once `iteration`
    has been logged; returns the finished process."""
    proc = subprocess.Popen(tool_command("train.py", QUICKSTART, "--work-dir", work_dir, "--cfg-options", *options),
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while not any(r["iter"] >= iteration for r in loss_records(work_dir)):
        assert proc.poll() is None, f"training ended before the signal: {proc.communicate()}"
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_preempted_truncated_and_missing_checkpoints_resume_bit_for_bit(tmp_path: Path) -> None:
    reference_dir, run = tmp_path / "reference", tmp_path / "run"
    run_tool("train.py", QUICKSTART, "--work-dir", reference_dir, "--cfg-options",
             *tiny_quickstart_options(MAX_ITERS), cwd=tmp_path)
    reference = {r["iter"]: r for r in loss_records(reference_dir)}

    # preemption: SIGTERM at a random iteration after the first checkpoint (iter_3); one data worker
    options = tiny_quickstart_options(MAX_ITERS, workers=1)
    proc = _sigterm_when(tmp_path, run, options, random.randint(4, 6))
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    stopped_at = int(message.split(" at iteration ")[1].split(";")[0])
    assert message == (f"stopped: training stopped by SIGTERM at iteration {stopped_at}; checkpoint saved to "
                       f"{run / f'iter_{stopped_at}.pth'}; continue with --resume")
    assert Path((run / "last_checkpoint").read_text()) == run / f"iter_{stopped_at}.pth"
    assert "SIGTERM received: finishing this iteration and saving a checkpoint" in proc.stdout

    # the newest checkpoint truncated (a node died while copying it): --resume warns and takes the one before
    # (checkpoints every 3 iterations: iter_3, iter_6)
    newest = run / f"iter_{stopped_at}.pth"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    resumed = run_tool("train.py", QUICKSTART, "--work-dir", run, "--resume", "--cfg-options", *options, cwd=tmp_path)
    assert f"Cannot resume from {newest}" in resumed.stdout and "truncated" in resumed.stdout
    assert f"Resume from {run / f'iter_{6 if stopped_at > 6 else 3}.pth'}" in resumed.stdout

    # last_checkpoint names a file that is gone: warned, the newest iter_N.pth that exists is used
    (run / f"iter_{MAX_ITERS}.pth").rename(tmp_path / "final.pth")
    options = [*options, f"train_cfg.max_iters={MAX_ITERS + 2}"]
    resumed = run_tool("train.py", QUICKSTART, "--work-dir", run, "--resume", "--cfg-options", *options, cwd=tmp_path)
    assert f"names {run / f'iter_{MAX_ITERS}.pth'}, which does not exist" in resumed.stdout
    assert f"Resume from {run / 'iter_6.pth'}" in resumed.stdout

    records = loss_records(run)
    assert {r["iter"] for r in records} == set(range(1, MAX_ITERS + 3))
    for record in records:
        if record["iter"] <= MAX_ITERS:
            assert record == reference[record["iter"]], f"iteration {record['iter']} differs after resume"
    _assert_same_weights(reference_dir / f"iter_{MAX_ITERS}.pth", tmp_path / "final.pth")


def test_a_full_disk_stops_with_one_line_and_keeps_the_last_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    real_save, saves = torch.save, []

    def save_until_the_disk_fills(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 1:
            return real_save(obj, path, *args, **kwargs)
        Path(path).write_bytes(b"\0" * 4096)  # part of the file, then no space
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    options = [*tiny_quickstart_options(MAX_ITERS), "default_hooks.checkpoint.max_keep_ckpts=1"]
    assert train_main([str(QUICKSTART), "--work-dir", "wd", "--cfg-options", *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: wd/iter_6.pth: writing the checkpoint failed (No space left")
    assert "the earlier checkpoints are intact" in err[0] and "--work-dir" in err[0]
    monkeypatch.undo()
    files = sorted(p.name for p in (tmp_path / "wd").iterdir() if p.is_file())
    assert files == ["dim_quickstart.py", "iter_3.pth", "last_checkpoint"]  # no half-written file left
    assert torch.load(tmp_path / "wd" / "iter_3.pth", weights_only=True)["meta"]["iter"] == 3
    assert (tmp_path / "wd" / "last_checkpoint").read_text() == "wd/iter_3.pth"


def test_a_corrupted_sample_mid_run_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    """After iteration 3 (checkpoint iter_3) every foreground PNG is corrupted; iteration 4 reads one."""
    real_step, steps = trainer.train_step, []

    def step_then_damage(training, batch):
        losses = real_step(training, batch)
        steps.append(1)
        if len(steps) == 3:
            for png in (tmp_path / "data" / "synthetic" / "Training_set").rglob("fg/*.png"):
                png.write_bytes(b"not a png")
        return losses

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trainer, "train_step", step_then_damage)
    options = [*tiny_quickstart_options(MAX_ITERS), "train_dataloader.batch_size=1"]
    assert train_main([str(QUICKSTART), "--work-dir", "wd", "--cfg-options", *options]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("error: data/synthetic/Training_set/") and "/fg/synth_train_0000" in err
    assert "cannot decode the fg image" in err
    assert "[data/synthetic/training_list.json record " in err and "alpha=data/synthetic/" in err
    assert "(at training iteration 4; the last checkpoint, wd/iter_3.pth, is intact" in err
    assert torch.load(tmp_path / "wd" / "iter_3.pth", weights_only=True)["meta"]["iter"] == 3


def test_a_sample_deleted_under_a_data_worker_stops_the_process(tmp_path: Path) -> None:
    """The same with a data worker, as a user runs it: the process must also end (its worker shut down, not
    left for the interpreter to wait on at exit), naming the file, the entry and the iteration."""
    work_dir = tmp_path / "wd"
    options = [*tiny_quickstart_options(MAX_ITERS, workers=1), "train_dataloader.batch_size=1"]
    proc = subprocess.Popen(tool_command("train.py", QUICKSTART, "--work-dir", work_dir, "--cfg-options", *options),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (work_dir / "iter_3.pth").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    for png in (tmp_path / "data" / "synthetic" / "Training_set").rglob("fg/*.png"):
        png.unlink()
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 2
    err = stderr.strip().splitlines()[-1]
    assert err.startswith("error: data/synthetic/Training_set/") and "fg image not found" in err
    assert "[data/synthetic/training_list.json record " in err
    iteration = int(err.split("at training iteration ")[1].split(";")[0])
    assert 4 <= iteration <= MAX_ITERS and "is intact: fix the sample, then --resume" in err  # workers read ahead
