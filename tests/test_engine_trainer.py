"""The training loop in-process on a tiny synthetic set: NaN handling and the files of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dimatting.engine.launch import train_main
from dimatting.models.dim import DIM
from tests.e2e.helpers import QUICKSTART, tiny_quickstart_options


def test_nan_loss_stops_and_names_the_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    real = DIM.compute_losses
    calls = []

    def nan_from_third_call(self, *args):
        calls.append(1)
        losses = real(self, *args)
        return {k: v * float("nan") for k, v in losses.items()} if len(calls) >= 4 else losses

    monkeypatch.setattr(DIM, "compute_losses", nan_from_third_call)
    monkeypatch.chdir(tmp_path)
    options = [*tiny_quickstart_options(6), "train_dataloader.batch_size=1"]
    assert train_main([str(QUICKSTART), "--work-dir", "wd", "--cfg-options", *options]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "loss is nan at iteration 4" in err and "wd/iter_3.pth" in err and "--resume" in err
    assert sorted(p.name for p in (tmp_path / "wd").glob("*.pth")) == ["iter_3.pth"]
    assert "- dimatting - ERROR - loss is nan at iteration 4" in next((tmp_path / "wd").glob("*/*.log")).read_text()
    losses = [json.loads(x) for x in next((tmp_path / "wd").glob("*/vis_data/train_losses.json")).read_text()
              .splitlines()]
    assert [r["iter"] for r in losses] == [1, 2, 3]
    assert set(losses[0]) == {"iter", "loss", "loss_alpha", "loss_comp"}
    assert losses[0]["loss"] == pytest.approx(losses[0]["loss_alpha"] + losses[0]["loss_comp"], rel=1e-6)
    ckpt = torch.load(tmp_path / "wd" / "iter_3.pth", weights_only=True)
    assert ckpt["dimatting"]["samples_seen"] == 3 and len(ckpt["dimatting"]["log_window"]["loss"]) == 3


def test_amp_on_cpu_uses_bf16_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU path, also on a GPU machine
    options = [*tiny_quickstart_options(2), "train_dataloader.batch_size=1"]
    assert train_main([str(QUICKSTART), "--work-dir", "wd", "--amp", "--cfg-options", *options]) == 0
    out = capsys.readouterr().out
    assert "--amp on CPU: using bfloat16 autocast" in out
    ckpt = torch.load(tmp_path / "wd" / "iter_2.pth", weights_only=True)
    assert "scaler" not in ckpt and all(v.dtype == torch.float32 for v in ckpt["state_dict"].values())
