"""Synthetic Comp-1k-layout generator: layout, determinism, composite rule, trimaps, learnable colours."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dimatting.cli import main
from dimatting.data import collate
from dimatting.data.comp1k import AdobeComp1kDataset
from dimatting.data.synthetic import make_sample, make_synthetic
from dimatting.data.transforms import (
    CropAroundUnknown,
    Flip,
    GenerateTrimap,
    LoadImageFromFile,
    PackInputs,
    Resize,
)

KEYS = ["alpha", "merged", "fg", "bg"]


def read(root: Path, rel: str, flag: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    return cv2.imread(str(root / rel), flag)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth"), n_train=4, n_test=3, seed=5, size=(96, 128))


def test_layout_and_json_like_prepare_comp1k(synthetic: Path):
    train = json.loads((synthetic / "training_list.json").read_text())
    test = json.loads((synthetic / "test_list.json").read_text())
    assert len(train) == 4 and len(test) == 3
    assert train[1] == {
        "alpha_path": "Training_set/Adobe-licensed images/alpha/synth_train_00001.png",
        "fg_path": "Training_set/Adobe-licensed images/fg/synth_train_00001.png",
        "bg_path": "Training_set/bg/synth_train_00001_0.png",
        "merged_path": "Training_set/merged/synth_train_00001_0.png",
    }
    assert list(test[0]) == ["alpha_path", "fg_path", "bg_path", "merged_path", "trimap_path"]
    assert test[2]["trimap_path"] == "Test_set/Adobe-licensed images/trimaps/synth_test_00002_0.png"
    for record in train + test:
        for rel in record.values():
            image = read(synthetic, rel)
            assert image is not None and image.shape[:2] == (96, 128)


def test_composite_rule_and_alpha_content(synthetic: Path):
    for record in json.loads((synthetic / "training_list.json").read_text()):
        fg, bg, merged = (read(synthetic, record[k]).astype(np.float64) for k in ("fg_path", "bg_path", "merged_path"))
        alpha = read(synthetic, record["alpha_path"])
        assert alpha.ndim == 2
        a = alpha[:, :, None] / 255.0
        assert np.array_equal(merged, np.floor(fg * a + bg * (1 - a)).clip(0, 255))
        soft = ((alpha > 0) & (alpha < 255)).mean()
        assert 0.005 < soft < 0.5 and (alpha == 255).mean() > 0.03 and (alpha == 0).mean() > 0.2


def test_test_trimaps_have_an_unknown_band(synthetic: Path):
    for record in json.loads((synthetic / "test_list.json").read_text()):
        trimap = read(synthetic, record["trimap_path"])
        alpha = read(synthetic, record["alpha_path"])
        assert set(np.unique(trimap)) == {0, 128, 255}
        assert ((alpha > 0) & (alpha < 255) <= (trimap == 128)).all()  # every soft pixel is unknown
        assert (trimap == 128).mean() > ((alpha > 0) & (alpha < 255)).mean()


def test_deterministic_bytes_and_parallel_equal(tmp_path: Path, synthetic: Path):
    again = make_synthetic(tmp_path / "a", n_train=4, n_test=3, seed=5, size=(96, 128), nproc=2)
    assert tree_bytes(again) == tree_bytes(synthetic)
    other = make_synthetic(tmp_path / "b", n_train=1, n_test=0, seed=6, size=(96, 128))
    a = (synthetic / "Training_set/merged/synth_train_00000_0.png").read_bytes()
    assert (other / "Training_set/merged/synth_train_00000_0.png").read_bytes() != a


def test_fg_and_bg_colours_are_separable():
    """The task is learnable: a hue rule tells known fg pixels from known bg pixels in most samples."""
    accuracies = []
    for index in range(6):
        sample = make_sample(0, "train", index, (96, 96))
        hsv = cv2.cvtColor(sample["fg"], cv2.COLOR_BGR2HSV_FULL).astype(np.int32)
        hue_fg = hsv[..., 0][sample["alpha"] == 255]
        hsv = cv2.cvtColor(sample["bg"], cv2.COLOR_BGR2HSV_FULL).astype(np.int32)
        sat_ok = hsv[..., 1] > 40  # grey backgrounds have no meaningful hue
        hue_bg = hsv[..., 0][(sample["alpha"] == 0) & sat_ok]
        warm = lambda h: (h < 50) | (h > 205)  # noqa: E731 - hue 0..255 scale: red..yellow, magenta
        accuracies.append((warm(hue_fg).mean() + (1 - warm(hue_bg).mean() if hue_bg.size else 1)) / 2)
    assert np.mean(accuracies) > 0.9


def test_feeds_the_dataset_and_both_pipelines(synthetic: Path):
    train_pipeline = [
        LoadImageFromFile("alpha", color_type="grayscale"),
        LoadImageFromFile("fg"),
        LoadImageFromFile("bg"),
        LoadImageFromFile("merged"),
        CropAroundUnknown(keys=KEYS, crop_sizes=[64, 96]),
        Flip(keys=KEYS),
        Resize(keys=KEYS, scale=(64, 64)),
        GenerateTrimap(kernel_size=(1, 30)),
        PackInputs(),
    ]
    dataset = AdobeComp1kDataset("training_list.json", str(synthetic), train_pipeline)
    batch = collate([dataset[(i, i)] for i in range(len(dataset))])
    assert batch["inputs"].shape == (4, 3, 64, 64)
    assert (batch["data_samples"]["trimap"] == 128).any()
    test_pipeline = [
        LoadImageFromFile("alpha", color_type="grayscale", save_original_img=True),
        LoadImageFromFile("trimap", color_type="grayscale", save_original_img=True),
        LoadImageFromFile("merged"),
        PackInputs(),
    ]
    sample = AdobeComp1kDataset("test_list.json", str(synthetic), test_pipeline, test_mode=True)[2]
    assert sample["inputs"].shape == (3, 96, 128) and sample["data_samples"]["ori_trimap"].dtype == torch.uint8


def test_cli_make_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    log = logging.getLogger("dimatting")  # `dim` re-points this logger; undo it after the test
    monkeypatch.setattr(log, "handlers", list(log.handlers))
    monkeypatch.setattr(log, "propagate", log.propagate)
    monkeypatch.setattr(log, "level", log.level)
    code = main(
        ["make-synthetic", "--out", str(tmp_path / "s"), "--n-train", "2", "--n-test", "1", "--size", "40", "48"]
    )
    assert code == 0 and "2 train + 1 test" in capsys.readouterr().out
    assert read(tmp_path / "s", "Test_set/merged/synth_test_00000_0.png").shape == (40, 48, 3)
    assert main(["make-synthetic", "--out", str(tmp_path / "t"), "--n-train", "-1", "--n-test", "1"]) == 2
