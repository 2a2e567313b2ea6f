"""The validation/test pass: predict every image of a test-mode dataset, score it, gather across ranks.

Exactly the reference's path per image (facts §2.1, §6.1): batch 1, the model's reflect-pad predict, the
uint8-quantised `postprocess_alpha` result, and the metrics on the *original* alpha and trimap from the
files. Each rank takes images rank, rank+W, ...; per-image results are gathered and put back in dataset
order before averaging, so any number of processes gives the same numbers as one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dimatting.data import collate
from dimatting.engine import dist, quickstart
from dimatting.engine.logging import progress_line
from dimatting.io import write_image
from dimatting.metrics import compute_metrics, sad
from dimatting.models.dim import postprocess_alpha

logger = logging.getLogger("dimatting")

# Our metric keys (those of the result dict, docs/metrics.md) and the reference's log names, in config order.
REFERENCE_NAMES = {"SAD": "SAD", "MSE": "MattingMSE", "GRAD": "GradientError", "CONN": "ConnectivityError"}
EVALUATOR_TYPES = {v: k for k, v in REFERENCE_NAMES.items()}
PROGRESS_EVERY = 100


def _name_of(metainfo: dict, index: int) -> str:
    path = metainfo.get("merged_path") or metainfo.get("alpha_path")
    return Path(path).stem if path else f"{index:06d}"


@torch.no_grad()
def evaluate_dataset(
    model: nn.Module,
    dataset: object,
    keys: Sequence[str],
    info: dist.DistInfo,
    mode: str = "val",
    num_workers: int = 0,
    save_dir: Path | None = None,
    baseline: bool = False,
) -> tuple[dict, dict[str, float]]:
    """Predict and score every image; returns (the metric result dict, run statistics), on every rank.

    Statistics: mean `time` and `data_time` per image and, with `baseline`, `baseline_SAD` (the mean SAD
    of the trivial alpha=0.5 matte (`quickstart.trivial_alpha`), computed only then.
    """
    total = len(dataset)
    indices = list(range(info.rank, total, info.world_size))
    loader = DataLoader(dataset, batch_size=1, sampler=indices, num_workers=num_workers, collate_fn=collate)
    was_training = model.training
    model.eval()
    preprocessor = model.data_preprocessor
    local: list[tuple[int, str, dict[str, float], float]] = []
    times, data_times = [], []
    tick = time.perf_counter()
    for index, batch in zip(indices, loader, strict=True):
        data_times.append(time.perf_counter() - tick)
        samples = batch["data_samples"]
        x = preprocessor(batch["inputs"].to(info.device), samples["trimap"].to(info.device))
        pred = model.predict(x)
        ori_trimap = samples["ori_trimap"][0, 0]
        alpha = postprocess_alpha(pred[0, 0].float().cpu(), ori_trimap).numpy()
        gt, trimap = samples["ori_alpha"][0, 0].numpy(), ori_trimap.numpy()
        name = _name_of(samples["metainfo"][0], index)
        scores = compute_metrics(alpha, gt, trimap, name=name, only=tuple(keys))
        if save_dir is not None:
            write_image(save_dir / f"{name}.png", alpha)
        half = sad(quickstart.trivial_alpha(trimap), gt, trimap) if baseline else 0.0
        local.append((index, name, {k: float(scores[k]) for k in keys}, half))
        times.append(time.perf_counter() - tick)
        done = len(local) * info.world_size
        if info.is_main and done % PROGRESS_EVERY < info.world_size and done < total:
            mean_time = float(np.mean(times))
            eta = mean_time * (total - done) / info.world_size
            logger.info(progress_line(mode, done, total, eta, mean_time, float(np.mean(data_times))))
        tick = time.perf_counter()
    if was_training:
        model.train()
    gathered = [item for part in dist.gather_objects(local) for item in part]
    gathered.sort(key=lambda item: item[0])
    images: dict[str, dict[str, float]] = {}
    for index, name, scores, _ in gathered:
        images[name if name not in images else f"{name}_{index}"] = scores
    mean = {k: float(np.mean([scores[k] for _, _, scores, _ in gathered])) for k in keys}
    result = {"protocol": "mmagic", "n": len(gathered), "mean": mean, "images": images}
    timing = dist.gather_objects((float(np.sum(times)), float(np.sum(data_times)), len(times)))
    count = max(sum(n for *_, n in timing), 1)
    stats = {"time": sum(t for t, *_ in timing) / count, "data_time": sum(d for _, d, _ in timing) / count}
    if baseline:
        stats["baseline_SAD"] = float(np.mean([half for *_, half in gathered]))
    return result, stats


def reference_metrics(result: dict) -> dict[str, float]:
    """The mean metrics under the reference's log names (SAD, MattingMSE, GradientError, ConnectivityError)."""
    return {REFERENCE_NAMES[k]: v for k, v in result["mean"].items()}
