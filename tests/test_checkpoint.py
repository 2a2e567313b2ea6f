"""Checkpoint loading (mmagic files with mmengine objects, no code execution), saving, VGG16 conversion."""

from __future__ import annotations

import logging
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dimatting.checkpoint import (
    ENCODER_CONVS,
    TORCHVISION_VGG16_CONVS,
    extract_state_dict,
    load_checkpoint,
    load_vgg16_encoder,
    load_weights,
    save_checkpoint,
    save_safetensors,
    vgg16_to_encoder_state_dict,
)
from dimatting.errors import CheckpointError
from dimatting.models import VGG16, build_dim


@pytest.fixture(autouse=True)
def _propagate_logs(monkeypatch):
    """caplog listens on the root logger; the CLI (if another test ran it) may have stopped propagation."""
    monkeypatch.setattr(logging.getLogger("dimatting"), "propagate", True)


class Tiny(nn.Module):
    def __init__(self, width: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, width, 3)
        self.head = nn.Linear(width, 1)


def _fake_mmengine_module(monkeypatch: pytest.MonkeyPatch) -> type:
    """A class importable as mmengine.logging.history_buffer.HistoryBuffer, like mmengine's own."""

    class HistoryBuffer:
        def __init__(self, values: list[float]) -> None:
            self._max_length = 1000000
            self._log_history = np.asarray(values, dtype=np.float64)
            self._count_history = np.ones(len(values), dtype=np.int64)

    module = types.ModuleType("mmengine.logging.history_buffer")
    HistoryBuffer.__module__ = module.__name__
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    module.HistoryBuffer = HistoryBuffer
    for name in ("mmengine", "mmengine.logging"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return HistoryBuffer


def _mmagic_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: nn.Module) -> Path:
    """A file shaped like mmagic's iter_N.pth: meta, state_dict, message_hub (mmengine objects), optimizer."""
    history_buffer = _fake_mmengine_module(monkeypatch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    for param in model.parameters():
        param.grad = torch.ones_like(param)
    optimizer.step()
    ckpt = {
        "meta": {"epoch": 0, "iter": 40000, "cfg": "model = dict(type='DIM')", "seed": 7,
                 "experiment_name": "dim_stage1_20240131_204014", "mmengine_version": "0.10.7"},
        "state_dict": model.state_dict(),
        "message_hub": {
            "log_scalars": {"train/loss": history_buffer([0.5, 0.25]), "train/lr": history_buffer([1e-5])},
            "runtime_info": {"iter": 40000, "max_iters": 1000000, "eta": 12.5},
            "resumed_keys": {"iter": True},
        },
        "optimizer": optimizer.state_dict(),
    }
    path = tmp_path / "iter_40000.pth"
    torch.save(ckpt, path)
    for name in ("mmengine.logging.history_buffer", "mmengine.logging", "mmengine"):
        monkeypatch.delitem(sys.modules, name)
    return path


def test_mmagic_checkpoint_with_message_hub_loads_without_mmengine(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = Tiny()
    path = _mmagic_checkpoint(tmp_path, monkeypatch, model)
    assert "mmengine" not in sys.modules
    with pytest.raises(pickle.UnpicklingError):  # the problem being solved: plain weights_only refuses it
        torch.load(path, weights_only=True)
    ckpt = load_checkpoint(path)
    assert list(ckpt) == ["meta", "state_dict", "message_hub", "optimizer"]
    assert ckpt["meta"]["iter"] == 40000
    loss = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert loss["__class__"] == "mmengine.logging.history_buffer.HistoryBuffer"
    np.testing.assert_array_equal(loss["_log_history"], [0.5, 0.25])
    assert "mmengine" not in sys.modules  # nothing was imported to load it
    state = extract_state_dict(ckpt)
    fresh = Tiny()
    assert load_weights(fresh, path) == ([], [])
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key])


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": Tiny().state_dict(), "payload": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to load.*system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_legacy_format_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_legacy.pth"
    torch.save({"payload": _RunsCode(marker)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"evil_legacy\.pth: refused to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_plain_state_dict_and_module_prefix(tmp_path):
    torch.manual_seed(1)
    source = Tiny()
    path = tmp_path / "plain.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    ckpt = load_checkpoint(path)
    assert set(ckpt) == {"state_dict"}
    target = Tiny()
    assert load_weights(target, path, strict=True) == ([], [])
    assert torch.equal(target.conv.weight, source.conv.weight)


def test_missing_and_unexpected_keys_are_named(tmp_path, caplog):
    state = Tiny().state_dict()
    state.pop("head.bias")
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.pth"
    save_checkpoint(path, {"state_dict": state})
    missing, unexpected = load_weights(Tiny(), path)
    assert missing == ["head.bias"]
    assert unexpected == ["extra.weight"]
    assert "head.bias" in caplog.text and "extra.weight" in caplog.text
    with pytest.raises(CheckpointError, match=r"partial\.pth: does not match the model: missing head\.bias"):
        load_weights(Tiny(), path, strict=True)


def test_stage1_checkpoint_in_stage3_model_lists_refiner_keys(tmp_path):
    path = tmp_path / "stage1.pth"
    save_checkpoint(path, {"state_dict": build_dim(with_refiner=False).state_dict()})
    missing, unexpected = load_weights(build_dim(with_refiner=True), path)
    assert unexpected == []
    assert len(missing) == 8 and all(k.startswith("refiner.") for k in missing)


def test_wrong_network_and_wrong_shapes_are_errors(tmp_path):
    other = tmp_path / "resnet.pth"
    save_checkpoint(other, {"state_dict": {"fc.weight": torch.zeros(3, 3), "layer1.0.conv1.weight": torch.zeros(1)}})
    with pytest.raises(CheckpointError, match=r"resnet\.pth: none of its 2 tensors belongs to this model"):
        load_weights(Tiny(), other)
    wider = tmp_path / "wider.pth"
    save_checkpoint(wider, {"state_dict": Tiny(width=5).state_dict()})
    with pytest.raises(CheckpointError, match=r"wider\.pth: 3 tensors have the wrong shape.*\(5, 2, 3, 3\)"):
        load_weights(Tiny(), wider)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "missing"])
def test_corrupt_truncated_or_missing_files(tmp_path, damage):
    path = tmp_path / "model.pth"
    save_checkpoint(path, {"state_dict": Tiny().state_dict()})
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match=r"model\.pth: "):
        load_checkpoint(path)


def test_save_checkpoint_is_atomic(tmp_path):
    path = tmp_path / "ckpt.pth"
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint(path, {"state_dict": Tiny().state_dict(), "bad": lambda: None})
    assert list(tmp_path.iterdir()) == []
    save_checkpoint(path, {"state_dict": Tiny().state_dict(), "meta": {"iter": 3}})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]
    assert torch.load(path, weights_only=True)["meta"] == {"iter": 3}


def test_safetensors_round_trip(tmp_path):
    torch.manual_seed(2)
    source = Tiny()
    path = tmp_path / "weights.safetensors"
    save_safetensors(path, source.state_dict(), metadata={"stage": "1"})
    target = Tiny()
    assert load_weights(target, path, strict=True) == ([], [])
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: cannot read"):
        load_checkpoint(path)


def _torchvision_vgg16_state_dict() -> dict[str, torch.Tensor]:
    """Random weights in torchvision's vgg16 layout (features.N + classifier), made here: no download."""
    torch.manual_seed(3)
    widths = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
              (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    state = {}
    for index, (cin, cout) in zip(TORCHVISION_VGG16_CONVS, widths, strict=True):
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3) * 0.05
        state[f"features.{index}.bias"] = torch.randn(cout) * 0.01
    state["classifier.6.weight"] = torch.randn(10, 16)
    return state


def test_torchvision_vgg16_becomes_4_channel_encoder_with_zero_trimap_filters(tmp_path):
    tv = _torchvision_vgg16_state_dict()
    converted = vgg16_to_encoder_state_dict(tv)
    assert set(converted) == {f"{n}.{k}" for n in ENCODER_CONVS for k in ("weight", "bias")}
    first = converted["layer1.0.weight"]
    assert first.shape == (64, 4, 3, 3)
    assert torch.equal(first[:, :3], tv["features.0.weight"]) and not first[:, 3].any()
    assert torch.equal(converted["layer5.4.weight"], tv["features.28.weight"])
    path = tmp_path / "vgg16.pth"
    torch.save(tv, path)
    encoder = VGG16(in_channels=4)
    missing, unexpected = load_vgg16_encoder(encoder, path)
    assert missing == ["conv6.weight", "conv6.bias"] and unexpected == []
    # with zero trimap filters the network is ImageNet VGG16 on the RGB part: the trimap changes nothing
    x = torch.randn(1, 4, 32, 32)
    y = x.clone()
    y[:, 3] = torch.rand(32, 32)
    with torch.no_grad():
        assert torch.equal(encoder(x)["out"], encoder(y)["out"])


def test_mmagic_4_channel_vgg_file_loads_as_is():
    torch.manual_seed(4)
    encoder_state = VGG16(in_channels=4).state_dict()
    prefixed = {f"backbone.encoder.{k}": v for k, v in encoder_state.items()}
    for state in (encoder_state, prefixed):
        converted = vgg16_to_encoder_state_dict(state)
        assert converted.keys() == encoder_state.keys()
        assert all(torch.equal(converted[k], encoder_state[k]) for k in encoder_state)


def test_vgg16_conversion_rejects_other_layouts():
    with pytest.raises(CheckpointError, match="neither torchvision keys"):
        vgg16_to_encoder_state_dict({"fc.weight": torch.zeros(2, 2)})
    tv = _torchvision_vgg16_state_dict()
    del tv["features.14.bias"]
    with pytest.raises(CheckpointError, match=r"'features\.14\.bias' is missing"):
        vgg16_to_encoder_state_dict(tv)
