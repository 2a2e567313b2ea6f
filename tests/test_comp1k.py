"""AdobeComp1kDataset: annotation formats, path joining, start-up checks, seeds, real sample through pipelines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dimatting.data import collate, comp1k
from dimatting.data.comp1k import AdobeComp1kDataset
from dimatting.data.transforms import (
    LoadImageFromFile,
    MergeFgAndBg,
    PackInputs,
)
from dimatting.errors import DataError
from tests.pipelines import stage1_train_pipeline


def stage1_test_pipeline() -> list:
    return [
        LoadImageFromFile("alpha", color_type="grayscale", save_original_img=True),
        LoadImageFromFile("trimap", color_type="grayscale", save_original_img=True),
        LoadImageFromFile("merged"),
        PackInputs(),
    ]


def fake_root(tmp_path: Path, names=("a", "b")) -> Path:
    root = tmp_path / "data"
    for name in names:
        for folder in ("alpha", "fg", "bg", "merged"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / folder / f"{name}.png"), np.full((8, 8, 3), 100, np.uint8))
    return root


def records(names=("a", "b")) -> list[dict]:
    return [{k: f"{k[:-5]}/{n}.png" for k in ("alpha_path", "fg_path", "bg_path", "merged_path")} for n in names]


def test_old_and_new_formats_join_every_value(tmp_path: Path):
    root = fake_root(tmp_path)
    (root / "old.json").write_text(json.dumps(records()))
    (root / "new.json").write_text(json.dumps({"metainfo": {"extra": 1, "task_name": "x"}, "data_list": records()}))
    old = AdobeComp1kDataset("old.json", data_root=str(root), pipeline=[], test_mode=False, serialize_data=True)
    new = AdobeComp1kDataset(root / "new.json", data_root=root)
    assert len(old) == len(new) == 2
    assert (
        old.get_data_info(1)
        == new.get_data_info(1)
        == {
            **{k: str(root / v) for k, v in records()[1].items()},
            "sample_idx": 1,
        }
    )
    assert new.metainfo == {"dataset_type": "matting_dataset", "task_name": "matting", "extra": 1}
    absolute = [{"alpha_path": str(root / "alpha" / "a.png")}]
    (tmp_path / "abs.json").write_text(json.dumps(absolute))
    dataset = AdobeComp1kDataset("abs.json", data_root=str(tmp_path), ann_file_is_ignored_key=1)
    assert dataset.ann_file == str(tmp_path / "abs.json")
    assert dataset[0]["alpha_path"] == absolute[0]["alpha_path"]  # absolute values stay as they are


def test_missing_root_ann_and_files_are_clear_errors(tmp_path: Path):
    with pytest.raises(DataError, match="make-synthetic") as err:
        AdobeComp1kDataset("training_list.json", data_root=str(tmp_path / "nope"))
    assert "prepare-comp1k" in str(err.value)
    root = fake_root(tmp_path)
    with pytest.raises(DataError, match=r"training_list\.json: annotation file not found"):
        AdobeComp1kDataset("training_list.json", data_root=str(root))
    (root / "bad.json").write_text(json.dumps({"data_list": []}))
    with pytest.raises(DataError, match="metainfo"):
        AdobeComp1kDataset("bad.json", data_root=str(root))
    (root / "list.json").write_text(json.dumps(records(("a", "b", "c", "d"))))
    with pytest.raises(DataError, match="8 referenced files are missing") as err:
        AdobeComp1kDataset("list.json", data_root=str(root))
    assert "c.png" in str(err.value)


def test_missing_composites_point_to_online_merge(tmp_path: Path):
    root = fake_root(tmp_path)
    (root / "merged" / "b.png").unlink()
    (root / "list.json").write_text(json.dumps(records()))
    with pytest.raises(DataError, match="online-merge"):
        AdobeComp1kDataset("list.json", data_root=str(root), pipeline=stage1_train_pipeline())
    online = [
        LoadImageFromFile("alpha", color_type="grayscale"),
        LoadImageFromFile("fg"),
        LoadImageFromFile("bg"),
        MergeFgAndBg(),
    ]
    dataset = AdobeComp1kDataset("list.json", data_root=str(root), pipeline=online)  # merged is not loaded
    assert dataset[1]["merged"].dtype == np.float32


def test_seeds_int_and_tuple(data_dir: Path):
    dataset = AdobeComp1kDataset("training_list.json", str(data_dir / "comp1k_mini"), stage1_train_pipeline())
    a, b, c = dataset[0], dataset[(0, 0)], dataset[(0, 12345)]
    assert torch.equal(a["data_samples"]["trimap"], b["data_samples"]["trimap"])
    assert torch.equal(dataset[(0, 12345)]["inputs"], c["inputs"])
    differs = [not torch.equal(dataset[(0, s)]["inputs"], a["inputs"]) for s in range(1, 6)]
    assert any(differs)
    assert dataset[-1]["data_samples"]["metainfo"]["sample_idx"] == 0
    with pytest.raises(IndexError):
        dataset[1]


def test_real_sample_through_train_pipeline(data_dir: Path):
    dataset = AdobeComp1kDataset("training_list.json", str(data_dir / "comp1k_mini"), stage1_train_pipeline())
    batch = collate([dataset[(0, s)] for s in (1, 2)])
    assert batch["inputs"].shape == (2, 3, 320, 320) and batch["inputs"].dtype == torch.uint8
    samples = batch["data_samples"]
    for key, channels in (("gt_alpha", 1), ("trimap", 1), ("gt_fg", 3), ("gt_bg", 3), ("gt_merged", 3)):
        assert samples[key].shape == (2, channels, 320, 320) and samples[key].dtype == torch.uint8
    assert set(torch.unique(samples["trimap"]).tolist()) <= {0, 128, 255}
    assert (samples["trimap"] == 128).any()
    meta = samples["metainfo"][0]
    assert set(meta) == {"merged_path", "ori_merged_shape", "sample_idx"}
    assert meta["ori_merged_shape"] == (552, 800, 3)


def test_real_sample_through_test_pipeline(data_dir: Path):
    root = data_dir / "comp1k_mini"
    dataset = AdobeComp1kDataset("test_list.json", str(root), stage1_test_pipeline(), test_mode=True)
    sample = dataset[0]
    assert sample["inputs"].shape == (3, 552, 800)
    samples = sample["data_samples"]
    trimap = cv2.imread(str(root / "trimap" / "GT05.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(samples["ori_trimap"][0].numpy(), trimap)
    assert np.array_equal(samples["trimap"][0].numpy(), trimap)
    assert samples["ori_alpha"].shape == samples["gt_alpha"].shape == (1, 552, 800)
    assert samples["metainfo"]["ori_trimap_shape"] == (552, 800, 1)
    assert samples["metainfo"]["trimap_path"] == str(root / "trimap" / "GT05.png")


def test_pipeline_from_config_dicts(data_dir: Path, tmp_path: Path):
    pytest.importorskip("dimatting.registry")
    pipeline = [
        {"type": "LoadImageFromFile", "key": "alpha", "color_type": "grayscale", "save_original_img": True},
        {"type": "LoadImageFromFile", "key": "trimap", "color_type": "grayscale", "save_original_img": True},
        {"type": "LoadImageFromFile", "key": "merged"},
        {"type": "PackInputs"},
    ]
    root = str(data_dir / "comp1k_mini")
    built = AdobeComp1kDataset("test_list.json", root, pipeline, test_mode=True)[0]
    direct = AdobeComp1kDataset("test_list.json", root, stage1_test_pipeline(), test_mode=True)[0]
    assert torch.equal(built["inputs"], direct["inputs"])


def test_copied_sample_with_relative_root(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    shutil.copytree(data_dir / "comp1k_mini", tmp_path / "mini")
    monkeypatch.chdir(tmp_path)
    dataset = AdobeComp1kDataset("test_list.json", "mini", stage1_test_pipeline())
    assert dataset[0]["data_samples"]["metainfo"]["merged_path"] == "mini/merged/GT05.jpg"


def test_record_without_a_loaded_key(tmp_path: Path):
    """An unreadable bg during preparation leaves a record without merged_path (as in the reference)."""
    root = fake_root(tmp_path)
    broken = records()
    del broken[1]["merged_path"]
    (root / "list.json").write_text(json.dumps(broken))
    with pytest.raises(DataError, match="record 1 has no 'merged_path'"):
        AdobeComp1kDataset("list.json", data_root=str(root), pipeline=stage1_train_pipeline())


@pytest.mark.parametrize("online_merge", [False, True])
def test_a_foreground_of_another_size_names_the_key_the_sizes_and_the_record(tmp_path: Path, online_merge: bool):
    root = fake_root(tmp_path)
    cv2.imwrite(str(root / "fg" / "b.png"), np.full((6, 10, 3), 100, np.uint8))
    (root / "ann.json").write_text(json.dumps(records()))
    pipeline = stage1_train_pipeline()
    if online_merge:
        pipeline = [*pipeline[:3], MergeFgAndBg(), *pipeline[4:]]
    dataset = AdobeComp1kDataset("ann.json", data_root=str(root), pipeline=pipeline)
    dataset[(0, 1)]  # the good record passes
    step = "MergeFgAndBg" if online_merge else "CropAroundUnknown"
    with pytest.raises(DataError, match=rf"^{step}: fg is 10x6 but alpha is 8x8 \(WxH\); every image of a sample "
                                        rf"must have the same size: fix or resize the fg file \[{root}/ann.json "
                                        rf"record 1: alpha={root}/alpha/b.png, fg={root}/fg/b.png, bg="):
        dataset[(1, 1)]


def test_a_samples_files_load_in_threads_with_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The leading loads run at once in threads; values and key order equal loading one by one."""
    import threading

    monkeypatch.setattr(comp1k, "available_cores", lambda: 4)
    root = fake_root(tmp_path)
    for name in ("a", "b"):  # distinct content per file, so a mix-up would show
        for i, folder in enumerate(("alpha", "fg", "bg", "merged")):
            cv2.imwrite(str(root / folder / f"{name}.png"), np.full((40, 48, 3), 30 * i + ord(name), np.uint8))
    (root / "ann.json").write_text(json.dumps(records()))
    dataset = AdobeComp1kDataset("ann.json", data_root=str(root), pipeline=stage1_train_pipeline())
    seen = set()
    real_load = LoadImageFromFile._load
    monkeypatch.setattr(LoadImageFromFile, "_load",
                        lambda self, path: seen.add(threading.current_thread().name) or real_load(self, path))
    threaded = dataset[(1, 5)]
    assert all(name.startswith("load") for name in seen) and dataset._threads() > 1
    monkeypatch.setattr(AdobeComp1kDataset, "_threads", lambda self: 1)
    seen.clear()
    sequential = dataset[(1, 5)]
    assert seen == {threading.current_thread().name}
    assert list(threaded["data_samples"]) == list(sequential["data_samples"])
    for key, value in sequential["data_samples"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(threaded["data_samples"][key], value), key
    assert torch.equal(threaded["inputs"], sequential["inputs"])
