"""tools/train.py and tools/test.py argument handling, work dirs, start-up errors, weights to start from."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from dimatting import released
from dimatting.checkpoint import ENCODER_CONVS, TORCHVISION_VGG16_CONVS
from dimatting.engine import dist, launch, weights
from dimatting.engine.launch import load_run, train_main, train_parser
from dimatting.engine.runconfig import TrainSettings
from dimatting.engine.weights import (
    init_pretrained_encoder,
    load_start_weights,
    pretrained_vgg16_path,
    starting_checkpoint,
)
from dimatting.errors import CheckpointError, ConfigError
from dimatting.hub import DownloadError
from dimatting.models import VGG16, build_dim
from tests.http_server import FileServer, save_hashed

REPO = Path(__file__).resolve().parents[1]
STAGE1 = REPO / "configs" / "dim" / "dim_stage1-v16_1xb1-1000k_comp1k.py"


def test_reference_argument_names() -> None:
    args = train_parser().parse_args([str(STAGE1), "--resume", "--amp", "--local_rank", "1", "--launcher", "pytorch"])
    assert (args.resume, args.amp, args.local_rank, args.launcher) == (True, True, 1, "pytorch")
    args = train_parser().parse_args([str(STAGE1), "--resume", "x.pth", "--cfg-options", "a=1", "b.c=[1,2]"])
    assert (args.resume, args.cfg_options) == ("x.pth", ["a=1", "b.c=[1,2]"])
    argv = [str(STAGE1), "c.pth", "--out", "r.json", "--save-path", "p", "--local-rank", "2"]
    args = launch.test_parser().parse_args(argv)
    assert (args.checkpoint, args.out, args.save_path, args.local_rank) == ("c.pth", "r.json", "p", 2)


def test_work_dir_defaults_to_the_config_stem_and_follows_the_options() -> None:
    run = load_run(train_parser().parse_args([str(STAGE1)]))
    assert run.work_dir == Path("work_dirs") / STAGE1.stem
    run = load_run(train_parser().parse_args([str(STAGE1), "--cfg-options", "work_dir=/x/y", "train_cfg.max_iters=5"]))
    settings = TrainSettings.from_config(run.cfg, run.config_path)
    assert (run.work_dir, settings.max_iters, settings.val_interval) == (Path("/x/y"), 5, 40000)
    run = load_run(train_parser().parse_args([str(STAGE1), "--work-dir", "/w"]))
    assert run.work_dir == Path("/w") and run.cfg["work_dir"] == "/w"
    settings = TrainSettings.from_config(run.cfg, run.config_path)
    assert (settings.best_metric, settings.log_interval, settings.checkpoint_interval, settings.max_keep_ckpts) == (
        "SAD", 100, 40000, 3)


def test_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train_main([str(tmp_path / "missing.py")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing.py: config file not found" in err and "\n" not in err
    assert train_main([str(STAGE1), "--launcher", "mpi"]) == 2
    assert "not supported" in capsys.readouterr().err
    assert launch.test_main([str(STAGE1), str(tmp_path / "c.pth"), "--work-dir", str(tmp_path),
                      "--cfg-options", f"test_dataloader.dataset.data_root={tmp_path}"]) == 2
    assert "c.pth: checkpoint file not found" in capsys.readouterr().err


def test_pytorch_launcher_needs_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match=r"dist_train\.sh"):
        dist.init_distributed("pytorch")
    info = dist.init_distributed("none")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    assert dist.gather_objects({"a": 1}) == [{"a": 1}] and dist.broadcast_object(3) == 3


def test_more_nccl_ranks_than_gpus_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks on one GPU would die in nccl's first collective; we refuse before touching the GPU."""
    for name, value in {"MASTER_ADDR": "127.0.0.1", "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2",
                        "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("GPU touched before the check"))
    with pytest.raises(ConfigError, match=r"2 processes on this machine but 1 visible GPU.*dist_train\.sh CONFIG 1"):
        dist.init_distributed("pytorch", {"backend": "nccl"})


def test_pretrained_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DIMATTING_PRETRAINED", raising=False)
    # nothing local, torchvision's host unreachable (conftest's refusing proxy): one line with the way out
    hub_file = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "vgg16-397923af.pth"
    with pytest.raises(DownloadError) as info:
        pretrained_vgg16_path({"type": "Pretrained", "checkpoint": "open-mmlab://mmedit/vgg16"})
    assert str(info.value).startswith(f"{weights.VGG16_URL}: download failed: connection refused; ")
    assert f"download it by hand to {hub_file}" in str(info.value)
    assert str(info.value).endswith("or set $DIMATTING_PRETRAINED=FILE, or train from scratch with "
                                    "--cfg-options model.backbone.encoder.init_cfg=None")
    monkeypatch.setenv("DIMATTING_PRETRAINED", str(tmp_path / "none.pth"))
    with pytest.raises(ConfigError, match="DIMATTING_PRETRAINED names a missing file"):
        pretrained_vgg16_path({"type": "Pretrained"})
    cached = tmp_path / ".cache" / "dimatting" / "vgg16.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    monkeypatch.delenv("DIMATTING_PRETRAINED")
    assert pretrained_vgg16_path({"type": "Pretrained"}) == cached


def _torchvision_vgg16(folder: Path) -> tuple[Path, dict]:
    """torchvision's ImageNet VGG16 layout (features.N, 3 input channels), saved as `vgg16-<sha256>.pth`."""
    torch.manual_seed(1)
    encoder = VGG16(in_channels=3).state_dict()
    state = {f"features.{index}.{kind}": encoder[f"{name}.{kind}"]
             for index, name in zip(TORCHVISION_VGG16_CONVS, ENCODER_CONVS, strict=True) for kind in ("weight", "bias")}
    return save_hashed(state, folder, "vgg16"), state


def test_stage1_fetches_imagenet_vgg16_once_then_works_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("DIMATTING_PRETRAINED", raising=False)
    path, state = _torchvision_vgg16(tmp_path / "served")
    init_cfg = {"type": "Pretrained", "checkpoint": "open-mmlab://mmedit/vgg16"}
    with FileServer(path.parent) as server:
        monkeypatch.setattr(weights, "VGG16_URL", server.url(path.name))
        model = build_dim(with_refiner=False)
        model.backbone.encoder.init_cfg = init_cfg
        init_pretrained_encoder(model)
        assert server.hits(path.name) == 1
        url_in_config = server.url(path.name)
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / path.name
    assert pretrained_vgg16_path(init_cfg) == cached  # the server gone: the cached copy
    first = model.backbone.encoder.layer1[0].weight.detach()
    assert torch.equal(first[:, :3], state["features.0.weight"]) and not first[:, 3].any()
    assert torch.equal(model.backbone.encoder.layer5[4].weight, state["features.28.weight"])
    # a URL in the config or in $DIMATTING_PRETRAINED is resolved (here: from the cache) the same way
    assert pretrained_vgg16_path({**init_cfg, "checkpoint": url_in_config}) == cached
    monkeypatch.setenv("DIMATTING_PRETRAINED", url_in_config)
    assert pretrained_vgg16_path(init_cfg) == cached


def test_load_from_wins_and_must_hold_a_backbone(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="load_from checkpoint not found"):
        starting_checkpoint({"load_from": str(tmp_path / "x.pth"), "init_from": "stage1"})
    path = tmp_path / "refiner_only.pth"
    torch.save({"state_dict": {"refiner.conv1.weight": torch.zeros(1)}}, path)
    assert starting_checkpoint({"load_from": str(path), "init_from": "stage1"}) == path
    with pytest.raises(CheckpointError, match=r"no encoder-decoder weights \(backbone\.\*\)"):
        load_start_weights(torch.nn.Linear(1, 1), path)


def test_load_from_a_url_or_a_released_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = save_hashed({"state_dict": {"backbone.x": torch.zeros(1)}}, tmp_path / "served", "stage1")
    with FileServer(path.parent) as server:
        url = server.url(path.name)
        cached = tmp_path / "torch_home" / "hub" / "checkpoints" / path.name
        assert starting_checkpoint({"load_from": url, "init_from": "stage1"}) == cached
        monkeypatch.setenv(released.RELEASE_URL_ENV, server.base + "/files/")
        name = "dim_stage1-v16_1xb1-1000k_comp1k"
        monkeypatch.setitem(released.RELEASED, name, dataclasses.replace(released.RELEASED[name], filename=path.name))
        assert starting_checkpoint({"load_from": name}) == cached
        assert server.hits(path.name) == 1


def test_a_mistyped_config_path_suggests_the_config(capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    seed_typo = "onfigs/dim/dim_stage3-v16-pln_1xb1-1000k_comp1k.py"  # the first letter lost
    assert launch.test_main([seed_typo, "x.pth"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {seed_typo}: config file not found; "
                   "did you mean configs/dim/dim_stage3-v16-pln_1xb1-1000k_comp1k.py?")


def test_model_level_kaiming_init_cfg() -> None:
    from dimatting.engine.weights import apply_model_init_cfg

    model = torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3), torch.nn.ReLU())
    model.init_cfg = None
    before = model[0].weight.clone()
    apply_model_init_cfg(model)
    assert torch.equal(model[0].weight, before)
    model.init_cfg = {"type": "Kaiming", "layer": "Conv2d"}
    torch.manual_seed(0)
    apply_model_init_cfg(model)
    assert model[0].weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)  # fan_out, relu gain
    assert not model[0].bias.any()
    model.init_cfg = {"type": "Xavier"}
    with pytest.raises(ConfigError, match="only dict\\(type='Kaiming'"):
        apply_model_init_cfg(model)
