"""`tools/test.py`: score a checkpoint on the config's test set, print the table, save mattes and json.

Prints the metric table (`metrics.format_table`) and the reference's `Iter(test) [n/n]    SAD: ...` line.
It also prints the SAD of the trivial alpha=0.5 matte and the ratio to it, the number that says whether the
network learned anything, and for the quickstart whether the ratio meets its target (`quickstart.verdict`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from dimatting import registry
from dimatting.engine import dist, quickstart
from dimatting.engine.evaluation import evaluate_dataset, reference_metrics
from dimatting.engine.logging import summary_line
from dimatting.engine.runconfig import RunConfig
from dimatting.engine.trainer import flush_denormals
from dimatting.engine.weights import load_start_weights
from dimatting.errors import ConfigError
from dimatting.hub import resolve_checkpoint
from dimatting.io import write_json, write_text
from dimatting.metrics import format_table

logger = logging.getLogger("dimatting")


def test(
    run: RunConfig,
    checkpoint: Path | str,
    save_path: Path | None = None,
    out: Path | None = None,
    baseline: bool = False,
    start_logging: bool = True,
) -> dict:
    """Evaluate `checkpoint` (a file, URL or released name) on `test_dataloader.dataset`; returns the metric
    result dict (protocol, n, mean, images), as `dim evaluate --json` writes it."""
    cfg = run.cfg
    info = dist.init_distributed(run.launcher, cfg.get("env_cfg", {}).get("dist_cfg"))
    if start_logging:
        stamp, log_dir = run.start_logging(info, dump_config=False)
    else:
        stamp, log_dir = None, None
    loader_cfg = cfg.get("test_dataloader")
    if not loader_cfg or not loader_cfg.get("dataset"):
        raise ConfigError(f"{run.config_path}: no test_dataloader.dataset to test on; add one to the config")
    if int(loader_cfg.get("batch_size", 1)) != 1:
        logger.warning("test_dataloader.batch_size=%s: testing uses batch 1 (as the reference)",
                       loader_cfg.get("batch_size"))
    keys = registry.metric_keys(cfg.get("test_evaluator") or cfg.get("val_evaluator"), "test_evaluator")
    model = registry.build_model(cfg["model"])
    load_start_weights(model, resolve_checkpoint(checkpoint))  # downloads (once) after logging has started
    model.to(info.device)
    flush_denormals(info.device)
    dataset = registry.build_dataset(loader_cfg["dataset"], "test_dataloader.dataset")
    with torch.inference_mode():
        result, stats = evaluate_dataset(
            model, dataset, keys, info, "test", num_workers=int(loader_cfg.get("num_workers", 0) or 0),
            save_dir=Path(save_path) if save_path else None, baseline=baseline,
        )
    shown = reference_metrics(result)
    logger.info(summary_line("test", len(dataset), shown, stats["data_time"], stats["time"]))
    if info.is_main:
        print(format_table(result))
        if log_dir is not None:
            write_text(log_dir / f"{stamp}.json", json.dumps({**shown, **stats}) + "\n")
        if out is not None:
            write_json(out, result)
            logger.info("Results written to %s", out)
        if save_path is not None:
            logger.info("Predicted alpha mattes written to %s", save_path)
        if baseline and "SAD" in result["mean"]:
            logger.info(quickstart.verdict(result["mean"]["SAD"], stats["baseline_SAD"],
                                           bool(quickstart.settings(cfg))))
            result = {**result, "baseline_SAD": stats["baseline_SAD"]}
    return result
