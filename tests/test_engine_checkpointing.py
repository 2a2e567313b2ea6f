"""Checkpoint files of a training run: contents, rotation, best, last_checkpoint, stage chaining."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from dimatting.engine import checkpointing
from dimatting.errors import CheckpointError, ConfigError
from tests.http_server import FileServer


def _ckpt(iteration: int, best: float | None = None) -> dict:
    model = nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = {"samples_seen": iteration, "best": {"metric": "SAD", "value": best, "iter": iteration},
             "log_window": {"loss": [0.5, 0.25]}}
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    return checkpointing.payload(model, optimizer, iteration, 7, "a = 1\n", "exp_20260101_000000", state, scaler)


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
    assert checkpointing.check_resumable(loaded, path)["samples_seen"] == 5


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


def test_resume_path_rules(tmp_path: Path) -> None:
    assert checkpointing.resume_path(tmp_path, False) is None
    assert checkpointing.resume_path(tmp_path, True) is None  # nothing to resume: start from scratch
    with pytest.raises(CheckpointError, match="--resume checkpoint not found"):
        checkpointing.resume_path(tmp_path, str(tmp_path / "nope.pth"))
    checkpointing.save_iteration(tmp_path, _ckpt(3), max_keep=-1)
    assert checkpointing.resume_path(tmp_path, True) == tmp_path / "iter_3.pth"


def test_resume_from_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = checkpointing.save_iteration(tmp_path / "served", _ckpt(3), max_keep=-1)
    with FileServer(path.parent) as server:
        resumed = checkpointing.resume_path(tmp_path / "work_dir", server.url(path.name))
    assert resumed == tmp_path / "torch_home" / "hub" / "checkpoints" / "iter_3.pth"
    assert resumed.read_bytes() == path.read_bytes()


def test_weights_only_checkpoints_cannot_be_resumed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="load_from=PATH instead of --resume"):
        checkpointing.check_resumable({"state_dict": {}}, tmp_path / "weights.pth")
