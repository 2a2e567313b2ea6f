"""The training loop, top to bottom: config -> data -> model -> Adam -> iterate -> validate -> checkpoint.

Exact resume is a property of the design, not of saved RNG states: the data stream is a pure function of
(seed, global sample number) (see `sampler.py`), the model has no dropout, so model + optimizer (+ AMP
scaler) + iteration + seed is the whole state. A resumed run's losses equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dimatting import registry
from dimatting.checkpoint import load_checkpoint
from dimatting.data import collate
from dimatting.engine import checkpointing, dist
from dimatting.engine.evaluation import REFERENCE_NAMES, evaluate_dataset, reference_metrics
from dimatting.engine.logging import JsonLines, Window, memory_mb, summary_line, train_line
from dimatting.engine.runconfig import RunConfig
from dimatting.engine.weights import (
    apply_model_init_cfg,
    init_pretrained_encoder,
    load_start_weights,
    starting_checkpoint,
)
from dimatting.errors import ConfigError, DimattingError

logger = logging.getLogger("dimatting")
# `Exp name: <experiment_name>_<timestamp>` every this many iterations, as the reference's LoggerHook
EXP_NAME_INTERVAL = 1000


@dataclass
class TrainResult:
    """Where a finished run left its files."""

    work_dir: Path
    log_dir: Path
    last: Path | None
    best: Path | None


class LossStep(nn.Module):
    """`model.compute_losses` as a forward(), so DistributedDataParallel can hook the gradient all-reduce."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, gt_alpha, gt_fg, gt_bg, gt_merged):
        return self.model.compute_losses(x, gt_alpha, gt_fg, gt_bg, gt_merged)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (model init draws from torch's global RNG)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int, seed: int, num_workers: int, rank: int) -> None:
    """Per-worker global seeds like the reference (seed + worker_id + num_workers*rank). Augmentations do
    not use them (they get their own RandomState per sample); this only keeps stray global draws
    reproducible."""
    seed_everything(seed + worker_id + num_workers * rank)


def flush_denormals(device: torch.device) -> None:
    """On CPU, treat denormal floats as zero. Training from scratch fills activations and gradients with
    denormals, which x86 CPUs process ~100x slower: measured here, 4x128px steps take 5.4 s instead of 1.3 s.
    The values involved are below 1.2e-38, far under anything that reaches the loss or the uint8 alpha.
    The flag is per thread: `launch` sets it first thing, before torch starts its worker threads."""
    if device.type == "cpu" and torch.set_flush_denormal(True):
        logger.info("CPU: denormal floats are flushed to zero (much faster; no visible effect on results)")


def make_batch(batch: dict, model: nn.Module, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Network input and RGB [0,1] targets from a collated training batch (facts §5, trap 7)."""
    pre = model.data_preprocessor
    samples = batch["data_samples"]
    height, width = batch["inputs"].shape[-2:]
    if height % 32 or width % 32:
        raise ConfigError(
            f"training crops are {height}x{width}; DIM needs multiples of 32 (five 2x2 poolings): set the train "
            "pipeline's Resize scale, e.g. --cfg-options train_dataloader.dataset.pipeline.6.scale=(320,320)"
        )
    x = pre(batch["inputs"].to(device, non_blocking=True), samples["trimap"].to(device, non_blocking=True))
    targets = [pre.gt_to_rgb01(samples[k].to(device, non_blocking=True)) for k in ("gt_alpha", "gt_fg", "gt_bg")]
    merged = samples["gt_merged"] if "gt_merged" in samples else batch["inputs"]
    return (x, *targets, pre.gt_to_rgb01(merged.to(device, non_blocking=True)))


def autocast_context(amp: bool, device: torch.device):
    """fp16 autocast on CUDA (with a GradScaler), bf16 on CPU, nothing without --amp."""
    if not amp:
        return torch.autocast(device.type, enabled=False)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def train(run: RunConfig) -> TrainResult:
    """Train the model `run.cfg` describes; rank 0 logs and saves into `run.work_dir`."""
    cfg = run.cfg
    info = dist.init_distributed(run.launcher, cfg.get("env_cfg", {}).get("dist_cfg"))
    device = info.device
    stamp, log_dir = run.start_logging(info)

    # ---- resume state, seed, determinism -------------------------------------------------------------
    resume_file = checkpointing.resume_path(run.work_dir, run.resume)
    resume_ckpt = load_checkpoint(resume_file) if resume_file else None
    state = checkpointing.check_resumable(resume_ckpt, resume_file) if resume_ckpt else {}
    seed = resume_ckpt["meta"]["seed"] if resume_ckpt else run.seed(info)
    logger.info("Set random seed to %d, deterministic: %s", seed, run.deterministic)
    torch.backends.cudnn.benchmark = run.cudnn_benchmark and not run.deterministic
    if run.deterministic:
        torch.use_deterministic_algorithms(True)
    seed_everything(seed)
    flush_denormals(device)

    # ---- model and its starting weights --------------------------------------------------------------
    model = registry.build_model(cfg["model"])
    model.init_weights()
    apply_model_init_cfg(model)
    if resume_ckpt:
        logger.info("Resume from %s (iteration %d)", resume_file, resume_ckpt["meta"]["iter"])
        model.load_state_dict(resume_ckpt["state_dict"], strict=True)
    elif (start := starting_checkpoint(cfg)) is not None:
        load_start_weights(model, start)
    else:
        init_pretrained_encoder(model)
    model.to(device)
    model.train()

    # ---- optimiser (all parameters, one group, as the reference) and AMP -----------------------------
    opt_cfg = dict(cfg["optim_wrapper"]["optimizer"])
    opt_type = opt_cfg.pop("type", "Adam")
    optimizer = build_optimizer(opt_type, model.parameters(), opt_cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=run.amp and device.type == "cuda")
    if run.amp and device.type == "cpu":
        logger.info("--amp on CPU: using bfloat16 autocast (no loss scaling)")
    if resume_ckpt:
        optimizer.load_state_dict(resume_ckpt["optimizer"])
        if "scaler" in resume_ckpt and scaler.is_enabled():
            scaler.load_state_dict(resume_ckpt["scaler"])
    start_iter = resume_ckpt["meta"]["iter"] if resume_ckpt else 0
    samples_seen = state.get("samples_seen", 0)
    best = state.get("best")
    window = Window(state.get("log_window"))

    # ---- data: the infinite seeded sampler starts where the checkpoint stopped -----------------------
    loader_cfg = cfg["train_dataloader"]
    batch_size = int(loader_cfg.get("batch_size", 1))
    num_workers = int(loader_cfg.get("num_workers", 0))
    dataset = registry.build_dataset(loader_cfg["dataset"])
    batches_per_epoch = math.ceil(len(dataset) / batch_size)  # the reference's train DataLoader length
    sampler = run.train_sampler(len(dataset), seed, info, samples_seen)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=functools.partial(seed_worker, seed=seed, num_workers=num_workers, rank=info.rank),
        persistent_workers=False,
    )
    val_dataset = registry.build_dataset(cfg["val_dataloader"]["dataset"]) if run.validates else None
    val_keys = registry.metric_keys(cfg["val_evaluator"], "val_evaluator") if run.validates else []
    step = LossStep(model)
    if info.distributed:
        step = DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)

    # ---- the loop ------------------------------------------------------------------------------------
    vis = log_dir / "vis_data"
    per_iter = JsonLines(vis / "train_losses.json") if info.is_main else None
    scalars = JsonLines(vis / "scalars.json", vis / f"{stamp}.json") if info.is_main else None
    max_iters, last_path = run.max_iters, None
    best_name = REFERENCE_NAMES[run.best_metric] if run.best_metric else ""
    found = checkpointing.best_checkpoints(run.work_dir, best_name) if best_name else []
    best_path = found[-1][1] if found else None
    run_time, run_iters = 0.0, 0
    logger.info("Checkpoints will be saved to %s.", run.work_dir)
    data_iter = iter(loader)
    tick = time.perf_counter()
    for it in range(start_iter + 1, max_iters + 1):
        batch = next(data_iter)
        data_time = time.perf_counter() - tick
        inputs = make_batch(batch, model, device)
        try:
            with autocast_context(run.amp, device):
                losses = step(*inputs)
            loss = sum(losses.values())
            finite = dist.all_ranks_ok(bool(torch.isfinite(loss)), device)
            if not finite:
                raise DimattingError(
                    f"loss is {loss.item()} at iteration {it}: training stopped; the last good checkpoint is "
                    f"{last_path or checkpointing.last_checkpoint(run.work_dir) or 'none (none saved yet)'}; "
                    "lower the lr with --cfg-options optim_wrapper.optimizer.lr=... or resume with --resume"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        except torch.cuda.OutOfMemoryError as exc:
            raise DimattingError(
                f"CUDA out of memory at iteration {it} ({device}); lower the batch or crop size, e.g. --cfg-options "
                "train_dataloader.batch_size=1 or train_pipeline crop sizes, or use --amp"
            ) from exc
        samples_seen += batch_size * info.world_size
        iter_time = time.perf_counter() - tick
        run_time, run_iters = run_time + iter_time, run_iters + 1
        values = {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}
        window.update({"time": iter_time, "data_time": data_time, **values})
        if per_iter is not None:
            per_iter.write({"iter": it, **values})

        if it % EXP_NAME_INTERVAL == 0 or it == batches_per_epoch:  # the reference's LoggerHook does both
            logger.info("Exp name: %s_%s", run.experiment_name, stamp)
        if it % run.log_interval == 0 or it == max_iters:
            lr = optimizer.param_groups[0]["lr"]
            memory = memory_mb(device)
            eta = run_time / run_iters * (max_iters - it)
            logger.info(train_line(it, max_iters, lr, eta, window, memory, list(losses)))
            if scalars is not None:
                means = {k: window.mean(k) for k in ("data_time", "loss", *losses, "time")}
                scalars.write({"lr": lr, **means, "memory": memory, "iter": it, "step": it})

        # Validate before saving this iteration's checkpoint, so that the checkpoint knows the new best.
        if run.validates and (it % run.val_interval == 0 or it == max_iters):
            result, stats = evaluate_dataset(
                model, val_dataset, val_keys, info, "val", num_workers=run.val_workers
            )
            shown = reference_metrics(result)
            logger.info(summary_line("val", len(val_dataset), shown, stats["data_time"], stats["time"]))
            if scalars is not None:
                scalars.write({**shown, "data_time": stats["data_time"], "time": stats["time"], "iter": it,
                               "step": 0})
            score = result["mean"].get(run.best_metric)
            if run.best_metric and score is not None and (best is None or score < best["value"]):
                best = {"metric": run.best_metric, "value": score, "iter": it}
                if info.is_main:
                    best_path = checkpointing.save_best(
                        run.work_dir,
                        run.payload(model, optimizer, scaler, it, seed, _state(best, samples_seen, window), stamp),
                        best_name,
                    )

        if it % run.checkpoint_interval == 0 or it == max_iters:
            if info.is_main:
                ckpt = run.payload(model, optimizer, scaler, it, seed,
                                   _state(best, samples_seen, window), stamp)
                last_path = checkpointing.save_iteration(run.work_dir, ckpt, run.max_keep_ckpts)
            dist.barrier()
        tick = time.perf_counter()

    logger.info("Log saved under %s", log_dir)
    logger.info("Checkpoint saved under %s", run.work_dir)
    return TrainResult(run.work_dir, log_dir, last_path or checkpointing.last_checkpoint(run.work_dir), best_path)


def _state(best: dict | None, samples_seen: int = 0, window: Window | None = None) -> dict[str, Any]:
    """The engine's resume state stored beside model and optimizer (plain values only)."""
    return {"samples_seen": samples_seen, "best": best, "log_window": window.state() if window else {}}


def build_optimizer(name: str, params, kwargs: dict) -> torch.optim.Optimizer:
    """`optim_wrapper.optimizer` -> a torch.optim optimiser over all parameters (one group, as the reference)."""
    cls = getattr(torch.optim, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"optim_wrapper.optimizer.type={name!r} is not a torch.optim optimiser; DIM uses 'Adam'")
    try:
        return cls(params, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"optim_wrapper.optimizer: {exc}; fix the option names") from None
