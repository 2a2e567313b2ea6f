"""Comp-1k preparation on a miniature fake archive: names, json, bg rule, composites, resume, errors."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dimatting.cli import main
from dimatting.data.comp1k import AdobeComp1kDataset
from dimatting.data.prepare import prepare_comp1k
from dimatting.data.transforms import (
    LoadImageFromFile,
)
from dimatting.errors import DataError
from tests.pipelines import stage1_train_pipeline

ADOBE = "Adobe-licensed images"
BG_SIZES = [(5, 6), (7, 9), (30, 40), (10, 12)]  # (h, w): smaller (exact x2), smaller (ceil), larger, equal


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, "JPEG" if path.suffix == ".jpg" else "PNG")


def write_fake_archive(root: Path) -> dict[str, Path]:
    """2 training fgs x 100 COCO-2014 bgs, 1 test fg x 20 VOC bgs, all tiny."""
    rng = np.random.RandomState(0)
    source, coco, voc = root / "adobe", root / "coco", root / "voc"
    ramp = np.tile(np.linspace(0, 255, 12).astype(np.uint8), (10, 1))
    fg = lambda: rng.randint(0, 256, (10, 12, 3)).astype(np.uint8)  # noqa: E731
    save(source / "Training_set" / ADOBE / "fg" / "a.png", fg())
    save(source / "Training_set" / ADOBE / "alpha" / "a.png", ramp)
    save(source / "Training_set" / "Other" / "fg" / "b.jpg", fg())
    save(source / "Training_set" / "Other" / "alpha" / "b.jpg", ramp[::-1].copy())
    (source / "Training_set" / "training_fg_names.txt").write_text("a.png\nb.jpg\n")
    coco_names = [f"COCO_train2014_{i:012d}.jpg" for i in range(200)]
    (source / "Training_set" / "training_bg_names.txt").write_text("\n".join(coco_names) + "\n")
    for i, name in enumerate(coco_names):
        save(coco / "train2014" / name, rng.randint(0, 256, (*BG_SIZES[i % 4], 3)).astype(np.uint8))
    write_test_set(source, voc, fg())
    return {"source": source, "coco": coco, "voc": voc}


def write_test_set(source: Path, voc: Path, fg: np.ndarray) -> None:
    """1 test fg (10x12) x 20 VOC bgs of every size class, with its 20 trimaps."""
    rng = np.random.RandomState(1)
    save(source / "Test_set" / ADOBE / "fg" / "t.png", fg)
    save(source / "Test_set" / ADOBE / "alpha" / "t.png", np.tile(np.linspace(0, 255, 12).astype(np.uint8), (10, 1)))
    for j in range(20):
        save(source / "Test_set" / ADOBE / "trimaps" / f"t_{j}.png", np.full((10, 12), 128, np.uint8))
    (source / "Test_set" / "test_fg_names.txt").write_text("t.png\n")
    voc_names = [f"2008_{i:06d}.jpg" for i in range(20)]
    (source / "Test_set" / "test_bg_names.txt").write_text("\n".join(voc_names) + "\n")
    for i, name in enumerate(voc_names):
        save(voc / "VOC2012" / "JPEGImages" / name, rng.randint(0, 256, (*BG_SIZES[i % 4], 3)).astype(np.uint8))


def tree_state(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def expected_bg(path: Path, w: int, h: int) -> np.ndarray:
    """The reference's rule, written out: upscale (bicubic, ceil) only if smaller, then top-left crop."""
    bg = Image.open(path).convert("RGB")
    bw, bh = bg.size
    ratio = max(w / bw, h / bh)
    if ratio > 1:
        bg = bg.resize((math.ceil(bw * ratio), math.ceil(bh * ratio)), Image.BICUBIC)
    return np.asarray(bg.crop((0, 0, w, h)))


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("comp1k")
    paths = write_fake_archive(root)
    paths["before"] = tree_state(paths["source"])
    paths["out"] = root / "out"
    paths["written"] = prepare_comp1k(paths["source"], paths["coco"], paths["voc"], paths["out"], nproc=2)
    return paths


def test_names_and_json(prepared):
    out = prepared["out"]
    train = json.loads((out / "training_list.json").read_text())
    test = json.loads((out / "test_list.json").read_text())
    assert len(train) == 200 and len(test) == 20
    assert train[0] == {
        "alpha_path": f"Training_set/{ADOBE}/alpha/a.png",
        "fg_path": f"Training_set/{ADOBE}/fg/a.png",
        "bg_path": "Training_set/bg/a_0.png",
        "merged_path": "Training_set/merged/a_0.png",
    }
    assert train[199] == {
        "alpha_path": "Training_set/Other/alpha/b.jpg",
        "fg_path": "Training_set/Other/fg/b.jpg",
        "bg_path": "Training_set/bg/b_99.png",
        "merged_path": "Training_set/merged/b_99.png",
    }
    assert test[7] == {
        "alpha_path": f"Test_set/{ADOBE}/alpha/t.png",
        "fg_path": f"Test_set/{ADOBE}/fg/t.png",
        "bg_path": "Test_set/bg/t_7.png",
        "merged_path": "Test_set/merged/t_7.png",
        "trimap_path": f"Test_set/{ADOBE}/trimaps/t_7.png",
    }
    for record in train + test:  # the folder stands alone
        assert all((out / rel).is_file() for rel in record.values())
    assert prepared["written"] == 2 * 220
    assert tree_state(prepared["source"]) == prepared["before"]  # the source is never modified


def test_background_rule_and_composites(prepared):
    out, coco = prepared["out"], prepared["coco"] / "train2014"
    train = json.loads((out / "training_list.json").read_text())
    for i in (100, 101, 102, 103, 4):  # fg b (JPEG), every bg size; then fg a
        record = train[i]
        fg = rgb(out / record["fg_path"])
        alpha = rgb(out / record["alpha_path"]) / 255.0
        bg = expected_bg(coco / f"COCO_train2014_{i:012d}.jpg", fg.shape[1], fg.shape[0])
        assert np.array_equal(rgb(out / record["bg_path"]), bg)
        merged = (fg * alpha + bg * (1.0 - alpha)).astype(np.uint8)
        assert np.array_equal(rgb(out / record["merged_path"]), merged)
    large = np.asarray(Image.open(coco / "COCO_train2014_000000000002.jpg").convert("RGB"))
    assert np.array_equal(rgb(out / "Training_set/bg/a_2.png"), large[:10, :12])  # no downscale, top-left


def test_resume_writes_nothing_and_repairs(prepared):
    out = prepared["out"]
    before = tree_state(out)
    assert prepare_comp1k(prepared["source"], prepared["coco"], prepared["voc"], out, nproc=1) == 0
    assert tree_state(out) == before
    (out / "Training_set/merged/a_5.png").unlink()
    assert prepare_comp1k(prepared["source"], prepared["coco"], prepared["voc"], out, nproc=1) == 2
    assert (out / "Training_set/merged/a_5.png").read_bytes() and not list(out.rglob(".*.tmp*"))


def test_result_feeds_the_dataset(prepared):
    pipeline = stage1_train_pipeline()
    dataset = AdobeComp1kDataset("training_list.json", str(prepared["out"]), pipeline)
    assert len(dataset) == 200
    sample = dataset[(150, 3)]
    assert sample["inputs"].shape == (3, 320, 320) and sample["data_samples"]["gt_alpha"].dtype == torch.uint8
    test = AdobeComp1kDataset("test_list.json", str(prepared["out"]), [LoadImageFromFile("trimap")])
    assert test[19]["trimap"].shape == (10, 12, 3)


@pytest.fixture
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dim` (cli.main) points the "dimatting" logger at the stderr of its time and stops propagation."""
    log = logging.getLogger("dimatting")
    monkeypatch.setattr(log, "handlers", [])
    monkeypatch.setattr(log, "propagate", True)
    monkeypatch.setattr(log, "level", log.level)


def test_coco2017_names_no_composite_and_unreadable_bg(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, restore_logging: None
):
    source = tmp_path / "adobe"
    save(source / "Training_set" / ADOBE / "fg" / "c.png", np.zeros((4, 5, 3), np.uint8))
    save(source / "Training_set" / ADOBE / "alpha" / "c.png", np.zeros((4, 5), np.uint8))
    (source / "Training_set" / "training_fg_names.txt").write_text("c.png\n")
    names = [f"COCO_train2014_{i:012d}.jpg" for i in range(100)]
    (source / "Training_set" / "training_bg_names.txt").write_text("\n".join(names) + "\n")
    for name in names:
        save(tmp_path / "coco" / "train2017" / name[15:], np.zeros((6, 6, 3), np.uint8))
    (tmp_path / "coco" / "train2017" / names[3][15:]).write_bytes(b"broken")
    write_test_set(source, tmp_path / "voc", np.zeros((10, 12, 3), np.uint8))
    assert "2017" in str(tmp_path)  # VOC names must not be stripped although the path says 2017
    out = tmp_path / "out"
    assert prepare_comp1k(source, tmp_path / "coco", tmp_path / "voc", out, composite=False, nproc=1) == 99 + 40
    train = json.loads((out / "training_list.json").read_text())
    assert train[3] == {"alpha_path": f"Training_set/{ADOBE}/alpha/c.png", "fg_path": f"Training_set/{ADOBE}/fg/c.png",
                        "bg_path": "Training_set/bg/c_3.png"}  # fmt: skip
    assert "merged_path" in train[4] and not (out / "Training_set" / "merged").exists()
    assert "unreadable background" in caplog.text


def test_clear_errors(tmp_path: Path, prepared, restore_logging: None):
    with pytest.raises(DataError, match="outside --source"):
        prepare_comp1k(prepared["source"], prepared["coco"], prepared["voc"], prepared["source"] / "out")
    coco = tmp_path / "coco"
    (coco / "train2014").mkdir(parents=True)
    with pytest.raises(DataError, match="200 missing"):
        prepare_comp1k(prepared["source"], coco, prepared["voc"], tmp_path / "out")
    with pytest.raises(DataError, match="train2017 nor train2014"):
        prepare_comp1k(prepared["source"], tmp_path, prepared["voc"], tmp_path / "out")
    with pytest.raises(DataError, match="VOC2012"):  # checked before any training work
        prepare_comp1k(prepared["source"], prepared["coco"], tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    args = ["prepare-comp1k", "--source", str(tmp_path / "none"), "--voc", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(args) == 2
