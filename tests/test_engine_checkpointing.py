"""Checkpoint files of a training run: contents, rotation, best, last_checkpoint, stage chaining."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from dimatting.engine import checkpointing
from dimatting.engine.logging import Window
from dimatting.engine.state import TrainState
from dimatting.errors import CheckpointError, ConfigError
from tests.http_server import FileServer


def _ckpt(iteration: int, best: float | None = None) -> dict:
    model = nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = TrainState(seed=7, iteration=iteration, samples_seen=iteration,
                       best={"metric": "SAD", "value": best, "iter": iteration}, window=Window({"loss": [0.5, 0.25]}))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    return checkpointing.payload(model, optimizer, scaler, state, "a = 1\n", "exp_20260101_000000")


def test_payload_has_the_mmagic_keys_and_loads_with_weights_only(tmp_path: Path) -> None:
    path = checkpointing.save_iteration(tmp_path, _ckpt(5), max_keep=-1)
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == ["meta", "state_dict", "optimizer", "dimatting"]
    meta = loaded["meta"]
    assert (meta["epoch"], meta["iter"], meta["seed"], meta["cfg"]) == (0, 5, 7, "a = 1\n")
    assert meta["experiment_name"] == "exp_20260101_000000"
    assert set(loaded["state_dict"]) == {"weight", "bias"}
    assert loaded["optimizer"]["state"][0]["exp_avg"].shape == (1, 2)
    assert loaded["dimatting"]["log_window"] == {"loss": [0.5, 0.25]}
    state = TrainState.from_checkpoint(loaded, path)
    assert (state.iteration, state.seed, state.samples_seen, state.window.state()) == (5, 7, 5, {"loss": [0.5, 0.25]})


def test_rotation_keeps_the_newest_and_last_checkpoint_points_at_it(tmp_path: Path) -> None:
    for iteration in (10, 20, 30):
        checkpointing.save_iteration(tmp_path, _ckpt(iteration), max_keep=2)
    assert sorted(p.name for p in tmp_path.glob("iter_*.pth")) == ["iter_20.pth", "iter_30.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == str(tmp_path / "iter_30.pth")
    assert checkpointing.last_checkpoint(tmp_path) == tmp_path / "iter_30.pth"


def test_last_checkpoint_survives_a_moved_work_dir(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkpointing.save_iteration(tmp_path, _ckpt(4), max_keep=-1)
    (tmp_path / "last_checkpoint").write_text("/elsewhere/iter_4.pth")
    assert checkpointing.last_checkpoint(tmp_path) == tmp_path / "iter_4.pth"
    (tmp_path / "last_checkpoint").write_text("/elsewhere/iter_99.pth")
    with caplog.at_level(logging.WARNING, logger="dimatting"):
        assert checkpointing.last_checkpoint(tmp_path) == tmp_path / "iter_4.pth"
    assert "does not exist" in caplog.text


def test_a_new_best_replaces_the_old_one(tmp_path: Path) -> None:
    checkpointing.save_best(tmp_path, _ckpt(10, best=3.0), "SAD")
    checkpointing.save_best(tmp_path, _ckpt(20, best=2.0), "SAD")
    assert [p.name for p in tmp_path.glob("best_*.pth")] == ["best_SAD_iter_20.pth"]


def test_stage_checkpoint_prefers_best_then_latest_then_explains(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    stage = tmp_path / "work_dirs" / "stage1"
    with pytest.raises(ConfigError, match=r"python tools/train.py configs/dim/stage1.py.*load_from=PATH"):
        checkpointing.stage_checkpoint("stage1", root=tmp_path / "work_dirs")
    checkpointing.save_iteration(stage, _ckpt(2), max_keep=-1)
    with caplog.at_level(logging.WARNING, logger="dimatting"):
        assert checkpointing.stage_checkpoint("stage1", root=tmp_path / "work_dirs") == stage / "iter_2.pth"
    assert "latest checkpoint" in caplog.text
    checkpointing.save_best(stage, _ckpt(1, best=1.0), "SAD")
    assert checkpointing.stage_checkpoint("stage1", root=tmp_path / "work_dirs") == stage / "best_SAD_iter_1.pth"


def test_resume_rules(tmp_path: Path) -> None:
    assert checkpointing.find_resume(tmp_path, False) is None
    assert checkpointing.find_resume(tmp_path, True) is None  # nothing to resume: start from scratch
    with pytest.raises(CheckpointError, match="--resume checkpoint not found"):
        checkpointing.find_resume(tmp_path, str(tmp_path / "nope.pth"))
    checkpointing.save_iteration(tmp_path, _ckpt(3), max_keep=-1)
    path, ckpt, state = checkpointing.find_resume(tmp_path, True)
    assert (path, ckpt["meta"]["iter"], state.iteration) == (tmp_path / "iter_3.pth", 3, 3)


def test_resume_skips_a_truncated_newest_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for iteration in (3, 6):
        checkpointing.save_iteration(tmp_path, _ckpt(iteration), max_keep=-1)
    newest = tmp_path / "iter_6.pth"
    newest.write_bytes(newest.read_bytes()[:1000])  # a node died mid-copy
    with caplog.at_level(logging.WARNING, logger="dimatting"):
        path, _, state = checkpointing.find_resume(tmp_path, True)
    assert (path, state.iteration) == (tmp_path / "iter_3.pth", 3)
    assert "Cannot resume from " + str(newest) in caplog.text and "truncated" in caplog.text
    (tmp_path / "iter_3.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"none of its 2 checkpoints can be resumed \(iter_6.pth, iter_3.pth\)"):
        checkpointing.find_resume(tmp_path, True)


def test_resume_when_last_checkpoint_names_a_missing_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkpointing.save_iteration(tmp_path, _ckpt(3), max_keep=-1)
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_9.pth"))
    with caplog.at_level(logging.WARNING, logger="dimatting"):
        assert checkpointing.find_resume(tmp_path, True)[0] == tmp_path / "iter_3.pth"
    assert "iter_9.pth, which does not exist" in caplog.text
    (tmp_path / "iter_3.pth").unlink()  # the pointer says a run happened, but nothing is left: never start over
    with pytest.raises(CheckpointError, match="names a checkpoint that is gone"):
        checkpointing.find_resume(tmp_path, True)


def test_resume_from_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = checkpointing.save_iteration(tmp_path / "served", _ckpt(3), max_keep=-1)
    with FileServer(path.parent) as server:
        resumed, _, state = checkpointing.find_resume(tmp_path / "work_dir", server.url(path.name))
    assert resumed == tmp_path / "torch_home" / "hub" / "checkpoints" / "iter_3.pth"
    assert resumed.read_bytes() == path.read_bytes() and state.iteration == 3


def test_weights_only_checkpoints_cannot_be_resumed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="load_from=PATH instead of --resume"):
        TrainState.from_checkpoint({"state_dict": {}}, tmp_path / "weights.pth")


def test_a_full_disk_is_one_clear_error_and_keeps_the_earlier_checkpoints(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    checkpointing.save_iteration(tmp_path, _ckpt(3), max_keep=1)

    def disk_full(obj, path):
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"iter_6\.pth: writing the checkpoint failed \(No space left on device; "
                                              r"\d+ MiB free there\); the earlier checkpoints are intact"):
        checkpointing.save_iteration(tmp_path, _ckpt(6), max_keep=1)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_3.pth", "last_checkpoint"]
    assert checkpointing.find_resume(tmp_path, True)[2].iteration == 3
