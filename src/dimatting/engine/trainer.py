"""The training loop, top to bottom: config -> data -> model -> Adam -> iterate -> validate -> checkpoint.

`train()` reads like torchvision's reference scripts: build the pieces, then loop over iterations, each one
`train_step()` (forward, losses, backward, Adam), the bookkeeping of `LossLog`, and `validate_and_save()`.
Everything a resumed run needs besides the weights, Adam and the AMP scaler is one `TrainState`, stored as
the checkpoint's own section; the data stream is a pure function of (seed, global sample number)
(`sampler.py`), so a resumed run's losses equal an uninterrupted run's bit for bit.

Faults a long run meets on a cluster end in one clear line and leave the checkpoints usable: a NaN loss, a
sample that went bad after start-up, a full disk while saving; SIGTERM/SIGINT save a checkpoint first
(`preemption.py`). Under DDP every such decision is agreed by all ranks, so they stop at the same iteration.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dimatting import registry
from dimatting.data import collate
from dimatting.data.decoded_cache import DecodedCache, cache_for_training
from dimatting.engine import checkpointing, dist
from dimatting.engine.evaluation import REFERENCE_NAMES, evaluate_dataset, reference_metrics
from dimatting.engine.logging import JsonLines, memory_mb, summary_line, train_line
from dimatting.engine.preemption import StopRequest, TrainingStopped, ignore_stop_signals
from dimatting.engine.runconfig import RunConfig, TrainSettings
from dimatting.engine.sampler import InfiniteSeededSampler
from dimatting.engine.state import TrainState
from dimatting.engine.weights import (
    apply_model_init_cfg,
    init_pretrained_encoder,
    load_start_weights,
    starting_checkpoint,
)
from dimatting.errors import ConfigError, DataError, DimattingError

logger = logging.getLogger("dimatting")
# `Exp name: <experiment_name>_<timestamp>` every this many iterations, as the reference's LoggerHook
EXP_NAME_INTERVAL = 1000
# iterations timed for `on_estimate`: the first builds oneDNN/cuDNN kernels, the following ones are typical
ESTIMATE_AFTER = 4


@dataclass(frozen=True)
class EarlyTiming:
    """How fast this run trains, measured over its first iterations (the first one excluded)."""

    seconds_per_iter: float
    iterations_done: int
    iterations_left: int
    validations_left: int
    pixels_per_iter: int  # batch x crop height x crop width


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


@dataclass
class Training:
    """What the loop trains and how: the model, its loss step (DDP-wrapped when distributed), Adam, the AMP
    scaler, the device and the run's identity (config text and experiment name, stored in checkpoints)."""

    model: nn.Module
    step: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    info: dist.DistInfo
    amp: bool
    cfg_text: str
    experiment_name: str

    @property
    def device(self) -> torch.device:
        return self.info.device

    def checkpoint(self, state: TrainState) -> dict[str, Any]:
        return checkpointing.payload(self.model, self.optimizer, self.scaler, state, self.cfg_text,
                                     self.experiment_name)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (model init draws from torch's global RNG)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int, seed: int, num_workers: int, rank: int) -> None:
    """Per-worker global seeds like the reference (seed + worker_id + num_workers*rank). Augmentations do
    not use them (they get their own RandomState per sample); this only keeps stray global draws
    reproducible. Workers leave SIGTERM/SIGINT to the training process."""
    ignore_stop_signals()
    seed_everything(seed + worker_id + num_workers * rank)


def use_deterministic_algorithms() -> None:
    """`randomness.deterministic=True`: torch's deterministic kernels (cuDNN's included) wherever they exist.
    max_unpool2d has none in torch, so strict mode would stop DIM's decoder at its first unpooling; it only
    warns here. Its non-determinism is the order of writes to one output pixel from several inputs, which
    2x2 max-pooling's indices (one winner per window) never produce."""
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def flush_denormals(device: torch.device) -> None:
    """On CPU, treat denormal floats as zero. Training from scratch fills activations and gradients with
    denormals, which x86 CPUs process ~100x slower: measured here, 4x128px steps take 5.4 s instead of 1.3 s.
    The values involved are below 1.2e-38, far under anything that reaches the loss or the uint8 alpha.
    The flag is per thread: `launch` sets it first thing, before torch starts its worker threads."""
    if device.type == "cpu" and torch.set_flush_denormal(True):
        logger.info("CPU: denormal floats are flushed to zero (much faster; no visible effect on results)")


def make_batch(batch: dict, model: nn.Module, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Network input (normalised RGB + trimap/255) and the RGB [0,1] targets alpha, fg, bg, merged from a
    collated training batch; the merged target is the composite file (or the online merge), not a
    recomposition."""
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


def amp_dtype(device: torch.device) -> torch.dtype:
    """What `--amp` computes in: bf16 on CPUs and on GPUs with bf16 tensor cores (Ampere and later, compute
    capability 8): fp32's range, so no loss scaling and no host sync for it; fp16 with a GradScaler on older
    GPUs."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
        return torch.float16
    return torch.bfloat16


def autocast_context(amp: bool, device: torch.device):
    """Autocast in `amp_dtype(device)` with --amp, nothing without it."""
    if not amp:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=amp_dtype(device))


def uses_channels_last(amp: bool, device: torch.device) -> bool:
    """NHWC activations for --amp on a GPU, the layout cuDNN's bf16/fp16 tensor-core kernels work in; fp32 and
    TF32 keep the reference's NCHW (cuDNN's fp32 NCHW kernels were the faster ones for DIM's forward on an
    H200), and CPUs keep NCHW so that their results stay bit-identical to the reference port."""
    return amp and device.type == "cuda"


def build_optimizer(name: str, params, kwargs: dict, device: torch.device | None = None) -> torch.optim.Optimizer:
    """`optim_wrapper.optimizer` -> a torch.optim optimiser over all parameters (one group, as the reference).

    On a GPU, Adam/AdamW run fused (one kernel for all parameters instead of several per tensor, and with a
    GradScaler no host sync for the inf check) unless the config chooses `fused` or `foreach` itself."""
    cls = getattr(torch.optim, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"optim_wrapper.optimizer.type={name!r} is not a torch.optim optimiser; DIM uses 'Adam'")
    on_gpu = device is not None and device.type == "cuda"
    if on_gpu and cls in (torch.optim.Adam, torch.optim.AdamW) and not {"fused", "foreach"} & kwargs.keys():
        kwargs = {**kwargs, "fused": True}
    try:
        return cls(params, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"optim_wrapper.optimizer: {exc}; fix the option names") from None


def load_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """`optimizer.load_state_dict`, with each per-parameter state tensor (Adam's moments) put in its parameter's
    memory layout. The loaded moments keep the strides they were saved with: channels-last after a GPU `--amp`
    run, NCHW otherwise. A run resumed with the other layout would then fail in CUDA's fused Adam ("must have
    same dtype, device, and layout"), or, in the CPU's fused Adam, silently pair each weight with another
    weight's moments."""
    optimizer.load_state_dict(state_dict)
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def build_training(run: RunConfig, settings: TrainSettings, info: dist.DistInfo,
                   resumed: tuple[Path, dict, TrainState] | None, stamp: str) -> Training:
    """The model with its starting weights (resume > load_from > init_from > ImageNet VGG16), Adam over all
    parameters (one group, as the reference) and the AMP scaler, restored from the checkpoint when resuming."""
    cfg, device = run.cfg, info.device
    model = registry.build_model(cfg["model"])
    model.init_weights()
    apply_model_init_cfg(model)
    if resumed:
        path, ckpt, state = resumed
        logger.info("Resume from %s (iteration %d)", path, state.iteration)
        model.load_state_dict(ckpt["state_dict"], strict=True)
    elif (start := starting_checkpoint(cfg)) is not None:
        load_start_weights(model, start)
    else:
        init_pretrained_encoder(model)
    model.to(device, memory_format=torch.channels_last if uses_channels_last(run.amp, device) else
             torch.contiguous_format)
    model.train()
    opt_cfg = dict(cfg["optim_wrapper"]["optimizer"])
    optimizer = build_optimizer(opt_cfg.pop("type", "Adam"), model.parameters(), opt_cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=run.amp and amp_dtype(device) == torch.float16)
    if run.amp:
        dtype = "bfloat16" if amp_dtype(device) == torch.bfloat16 else "float16"
        logger.info("--amp on %s: using %s autocast (%s)", "CPU" if device.type == "cpu" else device, dtype,
                    "with loss scaling" if scaler.is_enabled() else "no loss scaling")
    if resumed:
        load_optimizer_state(optimizer, resumed[1]["optimizer"])
        if "scaler" in resumed[1] and scaler.is_enabled():
            scaler.load_state_dict(resumed[1]["scaler"])
    step: nn.Module = LossStep(model)
    if info.distributed:
        step = DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)
    if run.compile:
        logger.info("--compile: the training step is compiled with torch.compile (the first iterations are slow)")
        step = torch.compile(step)
    return Training(model, step, optimizer, scaler, info, run.amp, run.cfg_text, f"{settings.experiment_name}_{stamp}")


def build_loader(cfg: dict, settings: TrainSettings, state: TrainState, info: dist.DistInfo,
                 decoded: DecodedCache | None = None) -> DataLoader:
    """The training batches, an infinite seeded stream that starts where the state says, its images decoded
    once into `decoded` if given. As the reference, `env_cfg.mp_cfg` sets OpenCV's thread count (inherited by
    the workers: several workers each running OpenCV's default one-thread-per-core pool would oversubscribe
    the CPU) and the workers' start method."""
    if settings.opencv_threads is not None:
        cv2.setNumThreads(int(settings.opencv_threads))
    dataset = registry.build_dataset(cfg["train_dataloader"]["dataset"])
    if decoded is not None:
        dataset.use_decoded_cache(decoded)
        logger.info(decoded.describe())
    sampler = InfiniteSeededSampler(len(dataset), state.seed, info.rank, info.world_size, start=state.samples_seen,
                                    shuffle=settings.shuffle)
    workers = settings.num_workers
    return DataLoader(
        dataset,
        batch_size=settings.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=info.device.type == "cuda",
        worker_init_fn=functools.partial(seed_worker, seed=state.seed, num_workers=workers, rank=info.rank),
        multiprocessing_context=settings.mp_start_method if workers else None,
        persistent_workers=False,
    )


def train_step(training: Training, batch: dict) -> dict[str, torch.Tensor]:
    """One iteration: forward, losses, backward, Adam. Returns the losses (with their sum as `loss`) as
    detached device tensors: reading them is left to `LossLog.sync`, so the step itself never waits for the
    device."""
    inputs = make_batch(batch, training.model, training.device)
    if uses_channels_last(training.amp, training.device):
        inputs = tuple(t.contiguous(memory_format=torch.channels_last) for t in inputs)
    try:
        with autocast_context(training.amp, training.device):
            losses = training.step(*inputs)
        loss = sum(losses.values())
        training.optimizer.zero_grad(set_to_none=True)
        training.scaler.scale(loss).backward()
        training.scaler.step(training.optimizer)
        training.scaler.update()
    except torch.cuda.OutOfMemoryError as exc:
        raise DimattingError(
            f"CUDA out of memory ({training.device}); lower the batch or crop size, e.g. --cfg-options "
            "train_dataloader.batch_size=1 or train_pipeline crop sizes, or use --amp"
        ) from exc
    return {"loss": loss.detach(), **{k: v.detach() for k, v in losses.items()}}


class LossLog:
    """Each iteration's losses and times on their way to the log window and `vis_data/train_losses.json`.

    Losses stay on the device until `sync`, which reads them all at once, finds the first non-finite one
    (agreed over all ranks) and records the finite ones before it, in iteration order."""

    NONE = 2**62  # "no bad iteration" in the all-rank minimum

    def __init__(self, state: TrainState, log_dir: Path, is_main: bool) -> None:
        self.state = state
        self.pending: list[tuple[int, dict[str, torch.Tensor], dict[str, float]]] = []
        self.per_iter = JsonLines(log_dir / "vis_data" / "train_losses.json") if is_main else None

    def add(self, iteration: int, losses: dict[str, torch.Tensor], times: dict[str, float]) -> None:
        self.pending.append((iteration, losses, times))

    def sync(self, device: torch.device) -> tuple[int, str] | None:
        """Read the pending losses: None if all are finite on every rank, else the first non-finite one's
        iteration and value as text."""
        if not self.pending:
            return None
        keys = list(self.pending[0][1])
        values = torch.stack([torch.stack([losses[k].float() for k in keys]) for _, losses, _ in self.pending])
        rows = values.cpu().tolist()
        iterations = [iteration for iteration, _, _ in self.pending]
        local_bad = next((i for i, row in zip(iterations, rows, strict=True) if not all(map(math.isfinite, row))),
                         self.NONE)
        first_bad = dist.all_reduce_int(local_bad, "min", device)
        records = []
        for (iteration, _, times), row in zip(self.pending, rows, strict=True):
            if iteration >= first_bad:
                break
            named = dict(zip(keys, row, strict=True))
            self.state.window.update({**times, **named})
            records.append({"iter": iteration, **named})
        if self.per_iter is not None and records:
            self.per_iter.write_many(records)
        self.pending.clear()
        if first_bad == self.NONE:
            return None
        value = str(rows[iterations.index(first_bad)][0]) if first_bad == local_bad else "not finite on another rank"
        return first_bad, value


@dataclass
class Validation:
    """The validation set and its metrics, and where the best checkpoint goes."""

    dataset: Any
    keys: list[str]
    workers: int
    best_metric: str | None
    best_path: Path | None = None

    @property
    def best_name(self) -> str:
        return REFERENCE_NAMES[self.best_metric] if self.best_metric else ""


def validate_and_save(training: Training, state: TrainState, settings: TrainSettings, work_dir: Path,
                      validation: Validation | None, scalars: JsonLines | None, force_save: bool = False
                      ) -> Path | None:
    """Validate when due (keeping the best checkpoint by the `save_best` metric), then write `iter_N.pth` when
    due or forced; returns the iteration checkpoint's path if one was written. Validation comes first, so the
    checkpoint records the new best. Only rank 0 writes; all ranks wait for it."""
    iteration, info = state.iteration, training.info
    checkpoint = functools.cache(lambda: training.checkpoint(state))  # built once for best and iteration files
    if validation is not None and settings.validates_at(iteration):
        result, stats = evaluate_dataset(training.model, validation.dataset, validation.keys, info, "val",
                                         num_workers=validation.workers)
        shown = reference_metrics(result)
        logger.info(summary_line("val", len(validation.dataset), shown, stats["data_time"], stats["time"]))
        if scalars is not None:
            scalars.write({**shown, "data_time": stats["data_time"], "time": stats["time"], "iter": iteration,
                           "step": 0})
        score = result["mean"].get(validation.best_metric) if validation.best_metric else None
        if score is not None and state.improves(validation.best_metric, score):
            state.best = {"metric": validation.best_metric, "value": score, "iter": iteration}
            if info.is_main:
                validation.best_path = checkpointing.save_best(work_dir, checkpoint(), validation.best_name)
    if not (settings.saves_at(iteration) or force_save):
        return None
    if info.is_main:
        checkpointing.save_iteration(work_dir, checkpoint(), settings.max_keep_ckpts)
    dist.barrier()
    return work_dir / f"iter_{iteration}.pth"


@contextlib.contextmanager
def worker_batches(loader: DataLoader) -> Iterator[Iterator[dict]]:
    """The loader's batches, its worker processes shut down when the block ends, however it ends. Left to
    garbage collection (an exception's traceback keeps the iterator alive), they would outlive the run and the
    interpreter would wait for them forever at exit: they ignore the SIGTERM it stops daemon processes with.
    PyTorch has no public close for the iterator; `_shutdown_workers` is what its finaliser calls."""
    batches = iter(loader)
    try:
        yield batches
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)  # absent with num_workers=0: nothing to stop
        if shutdown is not None:
            shutdown()


def next_batch(batches: Iterator[dict], iteration: int, work_dir: Path, last_saved: Path | None) -> dict:
    """The next batch; a sample that went bad after start-up stops the run naming it and the iteration."""
    try:
        return next(batches)
    except DataError as exc:
        last = last_saved or checkpointing.last_checkpoint(work_dir) or "none yet"
        raise DataError(f"{worker_message(exc)} (at training iteration {iteration}; the last checkpoint, {last}, "
                        "is intact: fix the sample, then --resume)") from exc


def worker_message(exc: Exception) -> str:
    """The original one-line message of an error a DataLoader worker raised (PyTorch re-raises it with the
    worker's traceback as the message; its last line is `module.Class: message`)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return lines[-1].split(": ", 1)[-1]
    return str(exc)


def train(run: RunConfig, on_estimate: Callable[[EarlyTiming], None] | None = None) -> TrainResult:
    """Train the model `run.cfg` describes; rank 0 logs and saves into `run.work_dir`. `on_estimate` is called
    once, after `ESTIMATE_AFTER` iterations, with how fast the run goes."""
    settings = TrainSettings.from_config(run.cfg, run.config_path)
    info = dist.init_distributed(run.launcher, run.cfg.get("env_cfg", {}).get("dist_cfg"))
    stamp, log_dir = run.start_logging(info)
    resumed = checkpointing.find_resume(run.work_dir, run.resume)
    state = resumed[2] if resumed else TrainState(seed=run.seed(info))
    logger.info("Set random seed to %d, deterministic: %s", state.seed, settings.deterministic)
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark and not settings.deterministic
    if settings.deterministic:
        use_deterministic_algorithms()
    seed_everything(state.seed)
    flush_denormals(info.device)
    training = build_training(run, settings, info, resumed, stamp)
    decoded = cache_for_training(run.decode_cache, run.decode_cache_gb, info.device.type == "cuda")
    loader = build_loader(run.cfg, settings, state, info, decoded)
    validation = None
    if settings.validates:
        validation = Validation(registry.build_dataset(run.cfg["val_dataloader"]["dataset"]),
                                registry.metric_keys(run.cfg["val_evaluator"], "val_evaluator"),
                                settings.val_workers, settings.best_metric)
        found = checkpointing.best_checkpoints(run.work_dir, validation.best_name) if settings.best_metric else []
        validation.best_path = found[-1][1] if found else None
    vis = log_dir / "vis_data"
    scalars = JsonLines(vis / "scalars.json", vis / f"{stamp}.json") if info.is_main else None
    logger.info("Checkpoints will be saved to %s.", run.work_dir)
    epoch = math.ceil(len(loader.dataset) / settings.batch_size)  # the reference's loader length
    with StopRequest() as stop, worker_batches(loader) as batches:
        last = run_loop(training, state, settings, run.work_dir, LossLog(state, log_dir, info.is_main), batches,
                        epoch, validation, scalars, stop, on_estimate)
    logger.info("Log saved under %s", log_dir)
    logger.info("Checkpoint saved under %s", run.work_dir)
    return TrainResult(run.work_dir, log_dir, last or checkpointing.last_checkpoint(run.work_dir),
                       validation.best_path if validation else None)


def run_loop(training: Training, state: TrainState, settings: TrainSettings, work_dir: Path, losses_log: LossLog,
             batches: Iterator[dict], batches_per_epoch: int, validation: Validation | None,
             scalars: JsonLines | None, stop: StopRequest, on_estimate: Callable[[EarlyTiming], None] | None = None
             ) -> Path | None:
    """Iterate from `state.iteration + 1` to `max_iters`; returns the last iteration checkpoint written.

    Losses are read back (and checked, and agreed over ranks with a pending stop signal) at every log,
    validation and checkpoint iteration, and on the CPU at every iteration; on a GPU reading them would make
    the host wait for the device, so in between the step runs ahead."""
    info, device = training.info, training.device
    sync_every = 1 if device.type == "cpu" else settings.log_interval
    last_saved, run_time, run_iters, first_time = None, 0.0, 0, 0.0
    tick = time.perf_counter()
    for it in range(state.iteration + 1, settings.max_iters + 1):
        batch = next_batch(batches, it, work_dir, last_saved)
        data_time = time.perf_counter() - tick
        losses = train_step(training, batch)
        state.iteration, state.samples_seen = it, state.samples_seen + settings.batch_size * info.world_size
        iter_time = time.perf_counter() - tick
        run_time, run_iters = run_time + iter_time, run_iters + 1
        first_time = iter_time if run_iters == 1 else first_time
        losses_log.add(it, losses, {"time": iter_time, "data_time": data_time})
        if on_estimate is not None and run_iters == ESTIMATE_AFTER:
            on_estimate(EarlyTiming((run_time - first_time) / (run_iters - 1), it, settings.max_iters - it,
                                    sum(map(settings.validates_at, range(it + 1, settings.max_iters + 1))),
                                    batch["inputs"].shape[0] * batch["inputs"].shape[-2] * batch["inputs"].shape[-1]))
        stopping = 0
        if (settings.logs_at(it) or settings.saves_at(it) or settings.validates_at(it) or it % sync_every == 0
                or (stop.signum is not None and not info.distributed)):
            bad = losses_log.sync(device)
            if bad is not None:
                last = last_saved or checkpointing.last_checkpoint(work_dir) or "none (none saved yet)"
                raise DimattingError(
                    f"loss is {bad[1]} at iteration {bad[0]}: training stopped; the last good checkpoint is {last}; "
                    "lower the lr with --cfg-options optim_wrapper.optimizer.lr=... or resume with --resume")
            stopping = dist.all_reduce_int(stop.signum or 0, "max", device)
        if it % EXP_NAME_INTERVAL == 0 or it == batches_per_epoch:  # the reference's LoggerHook does both
            logger.info("Exp name: %s", training.experiment_name)
        if settings.logs_at(it):
            log_progress(training, state, settings, scalars, [k for k in losses if k != "loss"], run_time / run_iters)
        last_saved = validate_and_save(training, state, settings, work_dir, validation, scalars,
                                       force_save=bool(stopping)) or last_saved
        if stopping:
            raise TrainingStopped.after_saving(stopping, it, last_saved)
        tick = time.perf_counter()
    return last_saved


def log_progress(training: Training, state: TrainState, settings: TrainSettings, scalars: JsonLines | None,
                 loss_keys: list[str], seconds_per_iter: float) -> None:
    """The reference's `Iter(train)` line (10-iteration means) and its record in `vis_data/scalars.json`."""
    lr = training.optimizer.param_groups[0]["lr"]
    memory = memory_mb(training.device)
    eta = seconds_per_iter * (settings.max_iters - state.iteration)
    window = state.window
    logger.info(train_line(state.iteration, settings.max_iters, lr, eta, window, memory, loss_keys))
    if scalars is not None:
        means = {k: window.mean(k) for k in ("data_time", "loss", *loss_keys, "time")}
        scalars.write({"lr": lr, **means, "memory": memory, "iter": state.iteration, "step": state.iteration})
