"""The decode-once cache: entries keyed by the file as it is, safe writes, a budget, and identical samples."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dimatting.data import comp1k, decoded_cache
from dimatting.data.comp1k import AdobeComp1kDataset
from dimatting.data.decoded_cache import DecodedCache, cache_for_training, entry_key
from dimatting.data.synthetic import make_synthetic
from dimatting.data.transforms import LoadImageFromFile, MergeFgAndBg
from dimatting.errors import DataError
from tests.pipelines import stage1_train_pipeline

GiB = 2**30


def cache_in(tmp_path: Path, max_bytes: int = GiB) -> DecodedCache:
    return DecodedCache.open(tmp_path / "cache", max_bytes=max_bytes, min_free_bytes=0)


class FakeDisk:
    """A disk of `size` bytes holding only the entries under `root` (the real one's free space moves with
    whatever else the machine writes, which would make the budget tests flaky)."""

    def __init__(self, root: Path, size: int) -> None:
        self.root, self.size = root, size

    def __call__(self, path) -> shutil._ntuple_diskusage:
        used = sum(p.stat().st_size for p in self.root.rglob("*.npy")) if self.root.exists() else 0
        return shutil._ntuple_diskusage(self.size, used, self.size - used)


def entries(cache: DecodedCache) -> list[Path]:
    return sorted(cache.directory.rglob("*.npy"))


def write_png(path: Path, value: int, shape=(24, 32, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    cv2.imwrite(str(path), rng.integers(0, 256, shape, dtype=np.uint8))
    return path


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda data, flag: calls.append(flag) or real(data, flag))
    return calls


def test_a_file_is_decoded_once_then_read_from_a_read_only_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    image = write_png(tmp_path / "fg.png", 1)
    load = LoadImageFromFile("fg")
    load.decoded = cache_in(tmp_path)
    decodes = count_decodes(monkeypatch)
    first = load({"fg_path": str(image)})["fg"]
    second = load({"fg_path": str(image)})["fg"]
    assert len(decodes) == 1 and len(entries(load.decoded)) == 1
    np.testing.assert_array_equal(first, cv2.imread(str(image)))
    np.testing.assert_array_equal(second, first)
    assert type(second) is np.ndarray and not second.flags.writeable  # a view of the memory map
    gray = LoadImageFromFile("alpha", color_type="grayscale")
    gray.decoded = load.decoded
    alpha = gray({"alpha_path": str(image)})["alpha"]
    assert alpha.shape == (24, 32, 1) and len(entries(load.decoded)) == 2  # another flag, another entry
    assert [p.name for p in entries(load.decoded) if p.name.endswith(".tmp")] == []


def test_a_changed_or_deleted_file_is_not_served_from_the_cache(tmp_path: Path):
    image = write_png(tmp_path / "bg.png", 1)
    load = LoadImageFromFile("bg")
    load.decoded = cache_in(tmp_path)
    load({"bg_path": str(image)})
    write_png(image, 2)  # same name, new pixels (new size / mtime / inode)
    os.utime(image, ns=(1, 1))
    np.testing.assert_array_equal(load({"bg_path": str(image)})["bg"], cv2.imread(str(image)))
    image.unlink()
    with pytest.raises(DataError, match=r"bg\.png: bg image not found"):
        load({"bg_path": str(image)})


def test_a_damaged_entry_is_decoded_again_and_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    image = write_png(tmp_path / "merged.png", 3)
    load = LoadImageFromFile("merged")
    load.decoded = cache_in(tmp_path)
    decodes = count_decodes(monkeypatch)
    load({"merged_path": str(image)})
    (entry,) = entries(load.decoded)
    entry.write_bytes(entry.read_bytes()[:200])  # truncated, as by a crash of something else
    np.testing.assert_array_equal(load({"merged_path": str(image)})["merged"], cv2.imread(str(image)))
    assert len(decodes) == 2 and entry.stat().st_size > 200  # decoded again and rewritten
    np.testing.assert_array_equal(load({"merged_path": str(image)})["merged"], cv2.imread(str(image)))
    assert len(decodes) == 2  # served by the entry


def test_the_cache_stops_growing_at_its_budget_and_before_the_disk_fills(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    images = [write_png(tmp_path / f"{i}.png", i) for i in range(4)]
    entry = 24 * 32 * 3 + 128  # pixels + the .npy header
    monkeypatch.setattr(shutil, "disk_usage", FakeDisk(tmp_path / "cache", size=100 * entry))

    def fill(cache: DecodedCache) -> int:
        for image in images:
            cache.put(image, image.stat(), cv2.IMREAD_COLOR, cv2.imread(str(image)))
        return len(entries(cache))

    assert fill(cache_in(tmp_path, max_bytes=2 * entry + 10)) == 2  # the budget
    assert decoded_cache.used_bytes(tmp_path / "cache") == 2 * entry
    reopened = cache_in(tmp_path, max_bytes=3 * entry)  # what is there counts against the budget
    assert reopened.used_at_open == 2 * entry and fill(reopened) == 3
    near_full = DecodedCache.open(tmp_path / "cache", max_bytes=GiB, min_free_bytes=96 * entry)
    assert fill(near_full) == 4  # 97 entries' room was free: one more, then the floor
    assert near_full.describe().startswith(f"decoded-image cache: {tmp_path / 'cache'} (0.0 GiB used; may take 0.0 "
                                           "GiB more, up to 1 GiB in all, keeping 0.0 GiB of the disk free)")


def test_a_failed_write_warns_once_and_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture):
    images = [write_png(tmp_path / f"{i}.png", i) for i in range(2)]
    cache = cache_in(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "save", disk_full)
    with caplog.at_level(logging.WARNING, logger="dimatting.data"):
        for image in images:
            cache.put(image, image.stat(), cv2.IMREAD_COLOR, cv2.imread(str(image)))
    assert not cache.writable and list(cache.directory.rglob("*")) == [next(cache.directory.iterdir())]
    assert [r.getMessage() for r in caplog.records] == [
        f"decoded-image cache {cache.directory}: cannot write (No space left on device); decoding every time from "
        "now on in this process; free space or pass --decode-cache off"
    ]


def test_entry_keys_follow_path_size_mtime_and_flag(tmp_path: Path):
    image = write_png(tmp_path / "a.png", 1)
    stat = image.stat()
    key = entry_key(image, stat, cv2.IMREAD_COLOR)
    assert key == entry_key(tmp_path / "." / "a.png", stat, cv2.IMREAD_COLOR)  # the resolved path
    assert key != entry_key(image, stat, cv2.IMREAD_GRAYSCALE)
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert key != entry_key(image, image.stat(), cv2.IMREAD_COLOR)


@pytest.mark.parametrize("online_merge", [False, True])
def test_samples_and_batches_are_the_same_with_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          online_merge: bool):
    """Bit for bit: the cache's pixels, a batch built in threads, and a second (cached) epoch."""
    make_synthetic(tmp_path / "data", n_train=6, n_test=0, seed=0, size=(96, 128))
    monkeypatch.setattr(comp1k, "available_cores", lambda: 3)
    pipeline = stage1_train_pipeline()
    if online_merge:
        pipeline = [*pipeline[:3], MergeFgAndBg(), *pipeline[4:]]

    def dataset() -> AdobeComp1kDataset:
        root = tmp_path / "data"
        return AdobeComp1kDataset("training_list.json", data_root=str(root), pipeline=pipeline)

    plain = [dataset()[(i, 100 + i)] for i in range(6)]
    cached = dataset()
    cache = cache_in(tmp_path)
    cached.use_decoded_cache(cache)
    decodes = count_decodes(monkeypatch)
    items = [(i, 100 + i) for i in range(6)]
    for epoch in range(2):
        batch = cached.__getitems__(items)
        for want, got in zip(plain, batch, strict=True):
            assert list(got["data_samples"]) == list(want["data_samples"])
            assert torch.equal(got["inputs"], want["inputs"])
            for key, value in want["data_samples"].items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(got["data_samples"][key], value), (epoch, key)
        assert len(decodes) == 6 * (3 if online_merge else 4)  # all in the first epoch, none in the second
    assert len(entries(cache)) == len(decodes)


def test_a_batch_runs_its_samples_in_the_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import threading

    make_synthetic(tmp_path / "data", n_train=4, n_test=0, seed=0, size=(64, 64))
    monkeypatch.setattr(comp1k, "available_cores", lambda: 2)
    data = AdobeComp1kDataset("training_list.json", data_root=str(tmp_path / "data"),
                              pipeline=stage1_train_pipeline())
    seen = set()
    real = AdobeComp1kDataset._sample
    monkeypatch.setattr(AdobeComp1kDataset, "_sample",
                        lambda self, item, threaded_loads: seen.add((threading.current_thread().name,
                                                                     threaded_loads))
                        or real(self, item, threaded_loads))
    data.__getitems__([(0, 1), (1, 2), (2, 3)])
    assert {threaded for _, threaded in seen} == {False} and all(name.startswith("load") for name, _ in seen)
    seen.clear()
    data.__getitems__([(0, 1)])
    assert seen == {(threading.current_thread().name, True)}


def test_training_uses_the_cache_on_a_gpu_or_where_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DIMATTING_DECODE_CACHE", str(tmp_path / "env"))
    assert cache_for_training("auto", 100, on_gpu=False) is None
    assert cache_for_training("off", 100, on_gpu=True) is None
    on_gpu = cache_for_training("auto", 100, on_gpu=True)
    assert on_gpu is not None and on_gpu.directory == tmp_path / "env" and on_gpu.max_bytes == 100 * GiB
    monkeypatch.setattr(shutil, "disk_usage", FakeDisk(tmp_path / "mine", size=50 * GiB))
    asked = cache_for_training(str(tmp_path / "mine"), 1.5, on_gpu=False)
    assert asked is not None and asked.directory == tmp_path / "mine" and asked.max_bytes == int(1.5 * GiB)
    assert asked.free_floor_bytes == 50 * GiB - int(1.5 * GiB)  # the budget, within the 5 GiB (10%) kept free
    small_disk = cache_for_training(str(tmp_path / "mine"), 100, on_gpu=False)
    assert small_disk is not None and small_disk.free_floor_bytes == 5 * GiB
    monkeypatch.delenv("DIMATTING_DECODE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert decoded_cache.default_directory() == tmp_path / "xdg" / "dimatting" / "decoded"


def test_an_unusable_folder_turns_the_cache_off_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="dimatting.data"):
        assert cache_for_training(str(blocker / "cache"), 100, on_gpu=True) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"decoded-image cache {blocker / 'cache'}: cannot use it (Not a directory); decoding every time. Pass "
        "--decode-cache DIR with a writable folder, or --decode-cache off"
    ]


def test_opening_removes_what_killed_writers_left_half_written(tmp_path: Path):
    folder = tmp_path / "cache" / "ab"
    folder.mkdir(parents=True)
    stale, fresh, entry = folder / "x.tmp", folder / "y.tmp", folder / "ab12.npy"
    for path in (stale, fresh, entry):
        path.write_bytes(b"partial")
    hours_ago = os.stat(stale).st_mtime - 2 * decoded_cache.STALE_TEMPORARY_S
    os.utime(stale, (hours_ago, hours_ago))
    os.utime(entry, (hours_ago, hours_ago))
    cache_in(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["ab12.npy", "y.tmp"]  # a live writer's file stays
