"""The training loop in-process on a tiny synthetic set: NaN handling and the files of a run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from dimatting.engine.launch import train_main
from dimatting.models.dim import DIM
from tests.e2e.helpers import QUICKSTART, loss_records, tiny_quickstart_options


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


def test_exp_name_line_every_interval_and_at_the_first_epoch_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """As the reference's LoggerHook: `Exp name: <experiment_name>_<timestamp>` every 1000 iterations (4 here)
    and once when the iteration count equals the train DataLoader's length (6 images / batch 2 = 3)."""
    from dimatting.engine import trainer

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(trainer, "EXP_NAME_INTERVAL", 4)
    assert train_main([str(QUICKSTART), "--work-dir", "wd", "--cfg-options", *tiny_quickstart_options(8)]) == 0
    log = next((tmp_path / "wd").glob("*/*.log"))
    lines = [line.split(" - INFO - ")[1] for line in log.read_text().splitlines()
             if "Exp name: " in line or "Iter(train)" in line]
    events = ["exp" if line.startswith("Exp name: ") else line.split("]")[0][-3:] for line in lines]
    assert events == ["2/8", "exp", "exp", "4/8", "6/8", "exp", "8/8"]
    assert {line for line in lines if line.startswith("Exp")} == {f"Exp name: dim_quickstart_{log.parent.name}"}


def test_amp_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 (no loss scaling) on CPUs and GPUs with bf16 tensor cores, fp16 + GradScaler before Ampere."""
    from dimatting.engine.trainer import amp_dtype, uses_channels_last

    cuda = torch.device("cuda", 0)
    assert amp_dtype(torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert amp_dtype(cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    assert amp_dtype(cuda) == torch.float16
    assert uses_channels_last(True, cuda) and not uses_channels_last(False, cuda)
    assert not uses_channels_last(True, torch.device("cpu"))


def test_adam_runs_fused_on_a_gpu_unless_the_config_says_otherwise() -> None:
    from dimatting.engine.trainer import build_optimizer

    params = [torch.nn.Parameter(torch.zeros(2))]
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert build_optimizer("Adam", params, {"lr": 1e-5}, cuda).defaults["fused"] is True
    assert not build_optimizer("Adam", params, {"lr": 1e-5}, cpu).defaults["fused"]
    assert not build_optimizer("Adam", params, {"lr": 1e-5, "foreach": True}, cuda).defaults["fused"]
    assert "fused" not in build_optimizer("SGD", params, {"lr": 1e-5}, cuda).defaults or not build_optimizer(
        "SGD", params, {"lr": 1e-5}, cuda).defaults["fused"]


def test_compile_wraps_the_training_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    """--compile hands the loss step (the module DDP would wrap) to torch.compile; the real compilation is
    exercised on a GPU by benchmarks/gpu_check.sh (on 2 CPU cores it takes minutes)."""
    from dimatting.engine.trainer import LossStep

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: compiled.append(module) or module)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    options = [*tiny_quickstart_options(2), "train_dataloader.batch_size=1"]
    assert train_main([str(QUICKSTART), "--work-dir", "wd", "--compile", "--cfg-options", *options]) == 0
    assert len(compiled) == 1 and isinstance(compiled[0], LossStep)
    assert "--compile: the training step is compiled with torch.compile" in capsys.readouterr().out


def test_loader_follows_env_cfg_mp_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the reference: OpenCV's thread count and the workers' start method come from env_cfg.mp_cfg."""
    import cv2

    from dimatting import config
    from dimatting.data.synthetic import make_synthetic
    from dimatting.engine import dist
    from dimatting.engine.runconfig import TrainSettings
    from dimatting.engine.state import TrainState
    from dimatting.engine.trainer import build_loader

    make_synthetic(tmp_path / "data", n_train=2, n_test=0, seed=0, size=(64, 64))
    cfg = config.Config.fromfile(QUICKSTART)
    config.merge_options(cfg, ["train_dataloader.dataset.data_root=" + str(tmp_path / "data"),
                               "env_cfg.mp_cfg.opencv_num_threads=3", "env_cfg.mp_cfg.mp_start_method=spawn"])
    before = cv2.getNumThreads()
    try:
        loader = build_loader(cfg, TrainSettings.from_config(cfg, QUICKSTART), TrainState(seed=0), dist.DistInfo())
        assert cv2.getNumThreads() == 3
        assert loader.multiprocessing_context.get_start_method() == "spawn"
    finally:
        cv2.setNumThreads(before)


def test_training_through_the_decode_cache_gives_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--decode-cache DIR`: the data workers fill it, a second epoch reads it, and the run is bit for bit the
    one without it (losses and weights)."""
    import shutil

    free = 2**50  # a roomy disk: the machine's own free space must not decide whether the cache writes
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(free, 0, free))
    monkeypatch.chdir(tmp_path)
    options = [*tiny_quickstart_options(6, workers=1), "randomness.seed=3", "default_hooks.checkpoint.interval=6"]
    assert train_main([str(QUICKSTART), "--work-dir", "plain", "--decode-cache", "off", "--cfg-options",
                       *options]) == 0
    assert train_main([str(QUICKSTART), "--work-dir", "cached", "--decode-cache", str(tmp_path / "cache"),
                       "--cfg-options", *options]) == 0
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 6 * 4  # 6 samples x alpha, fg, bg, merged
    runs = {}
    for name in ("plain", "cached"):
        losses = next((tmp_path / name).glob("*/vis_data/train_losses.json")).read_text()
        weights = torch.load(tmp_path / name / "iter_6.pth", weights_only=True)["state_dict"]
        runs[name] = (losses, weights)
    assert runs["plain"][0] == runs["cached"][0]
    assert all(torch.equal(runs["plain"][1][k], runs["cached"][1][k]) for k in runs["plain"][1])
    log = next((tmp_path / "cached").glob("*/*.log")).read_text()
    assert f"decoded-image cache: {tmp_path / 'cache'} (0.0 GiB used" in log
    assert "decoded-image cache" not in next((tmp_path / "plain").glob("*/*.log")).read_text()


@pytest.mark.parametrize("saved_layout", [torch.channels_last, torch.contiguous_format])
def test_resumed_adam_moments_follow_the_parameters_layout(saved_layout: torch.memory_format) -> None:
    """Moments saved by a channels-last run (GPU --amp) and loaded into an NCHW one, or the other way round:
    fused Adam updates each weight with its own moments, as the element-wise (layout-blind) Adam does."""
    from dimatting.engine.trainer import load_optimizer_state

    torch.manual_seed(0)
    saved_model = torch.nn.Conv2d(3, 4, 3).to(memory_format=saved_layout)
    saved = torch.optim.Adam(saved_model.parameters(), lr=0.1, fused=True)
    saved_model(torch.randn(1, 3, 5, 5)).square().sum().backward()
    saved.step()
    other = torch.contiguous_format if saved_layout == torch.channels_last else torch.channels_last
    results = []
    for fused in (True, False):
        model = torch.nn.Conv2d(3, 4, 3).to(memory_format=other)
        model.load_state_dict(saved_model.state_dict())
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1, fused=fused, foreach=False if not fused else None)
        load_optimizer_state(optimizer, copy.deepcopy(saved.state_dict()))  # as read from a file
        model(torch.ones(1, 3, 5, 5)).sum().backward()
        optimizer.step()
        results.append(model.weight.detach())
    assert optimizer.state[model.weight]["exp_avg"].stride() == model.weight.stride()
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-6)


def test_deterministic_mode_trains_and_changes_no_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """randomness.deterministic=True runs through DIM's unpooling (torch has no deterministic max_unpool2d)
    and gives the losses of a run without it."""
    monkeypatch.chdir(tmp_path)
    options = tiny_quickstart_options(2)
    assert train_main([str(QUICKSTART), "--work-dir", "plain", "--cfg-options", *options]) == 0
    try:
        assert train_main([str(QUICKSTART), "--work-dir", "strict", "--cfg-options", *options,
                           "randomness.deterministic=True"]) == 0
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    plain, strict = loss_records(tmp_path / "plain"), loss_records(tmp_path / "strict")
    assert len(plain) == 2 and plain == strict
