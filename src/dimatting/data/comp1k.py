"""Composition-1k dataset: the reference's annotation json, a pipeline, and per-sample random streams.

The json is a list of records (old format) or `{"metainfo": {...}, "data_list": [...]}` (new format). As in
the reference, `data_root` is joined to **every** value of every record (an absolute value stays as is) and
each record gets `sample_idx`. Unlike the reference, missing files are reported at start-up, all at once,
instead of as a crash hours into training.

`dataset[i]` runs the pipeline with `RandomState(0)`; `dataset[(i, sample_seed)]` with
`RandomState(sample_seed)`, which is how the engine makes augmentations reproducible and resumable.

The pipeline's leading `LoadImageFromFile` steps (alpha, fg, bg, merged: decoding is most of a sample's cost
at Comp-1k's 1-2 MP) run at once in threads (OpenCV decodes without the GIL), so a data-loader worker uses
several cores and a sample arrives sooner. Decoding is exact, and the results are merged in pipeline order:
the output is the same as loading one by one. A batch (`__getitems__`, what a DataLoader worker asks for) runs
its samples at once in the same threads instead, and `use_decoded_cache` makes the loads decode each file only
once (see `decoded_cache.py`).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch.utils.data

from dimatting.data.decoded_cache import DecodedCache
from dimatting.data.transforms import LoadImageFromFile
from dimatting.errors import DataError

HOW_TO_CREATE = (
    "create it with `dim prepare-comp1k --source ADOBE_DIR --coco COCO --voc VOC --out {root}` "
    "or a synthetic one with `dim make-synthetic --out {root} --n-train 200 --n-test 20`"
)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a job scheduler may narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _build_pipeline(pipeline: Sequence[Any]) -> list[Callable]:
    """Transforms given as objects are used as they are; config dicts are built by the registry."""
    built = []
    for step in pipeline:
        if isinstance(step, dict):
            from dimatting.registry import build  # lazily: the registry imports this module

            step = build(step)
        built.append(step)
    return built


class AdobeComp1kDataset:
    """Records from a Composition-1k annotation file, each run through `pipeline` on access."""

    METAINFO: ClassVar[dict[str, str]] = {"dataset_type": "matting_dataset", "task_name": "matting"}

    def __init__(
        self,
        ann_file: str | os.PathLike,
        data_root: str | os.PathLike = "",
        pipeline: Sequence[Any] = (),
        test_mode: bool = False,
        metainfo: dict | None = None,
        check_files: bool = True,
        **ignored: Any,
    ) -> None:
        self.data_root = str(data_root)
        self.ann_file = str(ann_file)
        if self.data_root and not os.path.isabs(self.ann_file):
            self.ann_file = os.path.join(self.data_root, self.ann_file)
        self.test_mode = test_mode
        self.metainfo = copy.deepcopy(self.METAINFO)
        self.metainfo.update(metainfo or {})
        self.pipeline = _build_pipeline(pipeline)
        self._pool_of: tuple[int, ThreadPoolExecutor] | None = None
        self.data_list = self._load()
        if check_files:
            self._check_files()

    def _load(self) -> list[dict[str, Any]]:
        root = self.data_root
        if root and not os.path.isdir(root):
            raise DataError(f"{root}: dataset folder not found; " + HOW_TO_CREATE.format(root=root))
        ann = Path(self.ann_file)
        if not ann.is_file():
            raise DataError(f"{ann}: annotation file not found; " + HOW_TO_CREATE.format(root=root or ann.parent))
        try:
            content = json.loads(ann.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{ann}: not valid JSON ({exc}); regenerate it with `dim prepare-comp1k`") from None
        if isinstance(content, dict):
            if "data_list" not in content or "metainfo" not in content:
                raise DataError(f"{ann}: a dict annotation needs both 'metainfo' and 'data_list' keys")
            for key, value in dict(content["metainfo"]).items():
                self.metainfo.setdefault(key, value)
            records = content["data_list"]
        else:
            records = content
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise DataError(f"{ann}: expected a list of records (dicts of paths)")
        data_list = []
        for idx, record in enumerate(records):
            joined = {}
            for key, value in record.items():
                if not isinstance(value, str):
                    raise DataError(f"{ann}: record {idx} key '{key}' is not a path string ({value!r})")
                joined[key] = os.path.join(root, value)
            joined["sample_idx"] = idx
            data_list.append(joined)
        return data_list

    def _check_files(self) -> None:
        """One error for all missing inputs: the keys the pipeline loads, or every `*_path` without loaders."""
        keys = [t.key for t in self.pipeline if isinstance(t, LoadImageFromFile)]
        missing: list[str] = []
        seen: set[str] = set()
        for record in self.data_list:
            wanted = keys or [k[: -len("_path")] for k in record if k.endswith("_path")]
            for key in wanted:
                path = record.get(f"{key}_path")
                if path is None:
                    raise DataError(
                        f"{self.ann_file}: record {record['sample_idx']} has no '{key}_path' but the pipeline "
                        "loads it; regenerate the annotation file"
                    )
                if path not in seen:
                    seen.add(path)
                    if not os.path.isfile(path):
                        missing.append(path)
        if not missing:
            return
        hint = HOW_TO_CREATE.format(root=self.data_root or ".")
        if all("/merged/" in p.replace(os.sep, "/") for p in missing):
            hint = (
                "the composites were not written (prepared with --no-composite?): re-run `dim prepare-comp1k` "
                "without --no-composite, or use the online-merge config"
            )
        examples = ", ".join(missing[:3])
        raise DataError(f"{self.ann_file}: {len(missing)} referenced files are missing (e.g. {examples}); {hint}")

    def __len__(self) -> int:
        return len(self.data_list)

    def get_data_info(self, index: int) -> dict[str, Any]:
        """A copy of record `index` (paths joined, `sample_idx` set), before the pipeline."""
        return copy.deepcopy(self.data_list[index])

    def __getitem__(self, item: int | tuple[int, int]) -> Any:
        return self._sample(item, threaded_loads=True)

    def __getitems__(self, items: list[int | tuple[int, int]]) -> list[Any]:
        """A batch (what a DataLoader asks a worker for): its samples at once in threads, so a worker building a
        batch of 16 uses its share of the cores instead of one; each sample keeps its own random stream, so the
        batch is the same as one sample after another."""
        if len(items) == 1 or self._threads() == 1:
            return [self._sample(item, threaded_loads=True) for item in items]
        return list(self._pool().map(lambda item: self._sample(item, threaded_loads=False), items))

    def use_decoded_cache(self, cache: DecodedCache | None) -> None:
        """Load images through `cache` (decode once, then read the raw pixels), or again from the files."""
        for step in self.pipeline:
            if isinstance(step, LoadImageFromFile):
                step.decoded = cache

    def _sample(self, item: int | tuple[int, int], threaded_loads: bool) -> Any:
        """Run the pipeline on one record; `threaded_loads` decodes its files at once in the pool (never from a
        pool thread: a task waiting on tasks queued behind it would deadlock a full pool)."""
        if isinstance(item, tuple):
            index, seed = item
        else:
            index, seed = item, 0
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples ({self.ann_file})")
        results = self.get_data_info(index % len(self))
        rng = np.random.RandomState(seed)
        try:
            loads = self._leading_loads()
            if threaded_loads and len(loads) > 1 and self._threads() > 1:
                parts = self._pool().map(lambda step: step({f"{step.key}_path": results[f"{step.key}_path"]}), loads)
                for part in parts:  # in pipeline order: the results' key order must not depend on thread timing
                    results.update(part)
            else:
                loads = []
            for transform in self.pipeline[len(loads):]:
                results = transform(results, rng)
        except DataError as exc:  # a file went bad after start-up: say which annotation entry holds it
            raise DataError(f"{exc} [{self.describe(index % len(self))}]") from None
        return results

    def _leading_loads(self) -> list[LoadImageFromFile]:
        loads = []
        for step in self.pipeline:
            if not isinstance(step, LoadImageFromFile):
                break
            loads.append(step)
        return loads

    def _threads(self) -> int:
        """Threads for this process's loading: its share of the cores, which it splits with the other data
        workers and, under torchrun, the other ranks on the machine (OpenCV and NumPy work without the GIL)."""
        worker = torch.utils.data.get_worker_info()
        sharers = (worker.num_workers if worker else 1) * int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        return max(1, available_cores() // sharers)

    def _pool(self) -> ThreadPoolExecutor:
        """This process's thread pool (made on first use: a pool does not survive the fork into a worker)."""
        if self._pool_of is None or self._pool_of[0] != os.getpid():
            self._pool_of = (os.getpid(), ThreadPoolExecutor(self._threads(), thread_name_prefix="load"))
        return self._pool_of[1]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pool_of": None}  # workers started with spawn get a copy without the pool

    def describe(self, index: int) -> str:
        """`<ann_file> record <i>: key=path, ...`: where a sample comes from, for error messages."""
        record = self.data_list[index]
        paths = ", ".join(f"{k.removesuffix('_path')}={v}" for k, v in record.items() if k.endswith("_path"))
        return f"{self.ann_file} record {index}: {paths}"

    def __repr__(self) -> str:
        return f"AdobeComp1kDataset(ann_file={self.ann_file!r}, n={len(self)}, test_mode={self.test_mode})"
