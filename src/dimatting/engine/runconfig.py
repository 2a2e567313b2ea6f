"""A run's command-line choices (`RunConfig`) and the config values training reads (`TrainSettings`).

The honoured keys are listed in docs/configs.md. `TrainSettings` resolves and checks them once, into a frozen
object, so the loop in `trainer.py` is free of `.get(..., default)` chains and a bad value fails at start-up.
"""

from __future__ import annotations

import functools
import logging
import platform
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from dimatting import __version__, config
from dimatting.data.decoded_cache import DEFAULT_MAX_GIB
from dimatting.engine import dist, quickstart
from dimatting.engine.evaluation import EVALUATOR_TYPES, REFERENCE_NAMES
from dimatting.engine.logging import add_file_log, setup_console, timestamp
from dimatting.errors import ConfigError

logger = logging.getLogger("dimatting")


def _get(cfg: dict, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _best_metric(cfg: dict) -> str | None:
    """Our key of the metric whose best value is kept (`save_best`; absent -> SAD, None -> none)."""
    hook = _get(cfg, "default_hooks.checkpoint", {}) or {}
    name = hook.get("save_best", "SAD")
    if name is None or name is False:
        return None
    if name == "auto":
        name = "SAD"
    if isinstance(name, (list, tuple)):
        name = name[0]
    key = EVALUATOR_TYPES.get(name, name)
    if key not in REFERENCE_NAMES:
        raise ConfigError(f"default_hooks.checkpoint.save_best={name!r}: use SAD, MattingMSE, GradientError "
                          "or ConnectivityError")
    if hook.get("rule", "less") != "less":
        raise ConfigError("default_hooks.checkpoint.rule must be 'less': lower is better for all DIM metrics")
    return key


@dataclass(frozen=True)
class TrainSettings:
    """Every config value the training loop reads, resolved and checked once at start-up."""

    max_iters: int
    val_interval: int
    validates: bool
    val_workers: int
    checkpoint_interval: int
    max_keep_ckpts: int
    best_metric: str | None
    log_interval: int
    deterministic: bool
    cudnn_benchmark: bool  # cuDNN's autotuner (`env_cfg.cudnn_benchmark`; the seed configs keep False)
    experiment_name: str
    batch_size: int
    num_workers: int
    shuffle: bool
    opencv_threads: int | None  # env_cfg.mp_cfg.opencv_num_threads: OpenCV's own threads in every process
    mp_start_method: str | None  # env_cfg.mp_cfg.mp_start_method: how data-loader workers are started

    @classmethod
    def from_config(cls, cfg: dict, config_path: Path) -> TrainSettings:
        max_iters = _get(cfg, "train_cfg.max_iters")
        if not isinstance(max_iters, int) or max_iters <= 0:
            raise ConfigError(f"{config_path}: train_cfg.max_iters must be a positive integer, got {max_iters!r}")
        return cls(
            max_iters=max_iters,
            val_interval=int(_get(cfg, "train_cfg.val_interval") or max_iters),
            validates=bool(_get(cfg, "val_dataloader.dataset")) and cfg.get("val_evaluator") is not None,
            val_workers=int(_get(cfg, "val_dataloader.num_workers", 0) or 0),
            checkpoint_interval=int(_get(cfg, "default_hooks.checkpoint.interval") or max_iters),
            max_keep_ckpts=int(_get(cfg, "default_hooks.checkpoint.max_keep_ckpts", -1)),
            best_metric=_best_metric(cfg),
            log_interval=int(_get(cfg, "default_hooks.logger.interval", 100) or 100),
            deterministic=bool(_get(cfg, "randomness.deterministic", False)),
            cudnn_benchmark=bool(_get(cfg, "env_cfg.cudnn_benchmark", False)),
            experiment_name=str(cfg.get("experiment_name") or config_path.stem),
            batch_size=int(_get(cfg, "train_dataloader.batch_size", 1)),
            num_workers=int(_get(cfg, "train_dataloader.num_workers", 0) or 0),
            shuffle=bool(_get(cfg, "train_dataloader.sampler.shuffle", True)),
            opencv_threads=_get(cfg, "env_cfg.mp_cfg.opencv_num_threads"),
            mp_start_method=_get(cfg, "env_cfg.mp_cfg.mp_start_method"),
        )

    def validates_at(self, iteration: int) -> bool:
        return self.validates and (iteration % self.val_interval == 0 or iteration == self.max_iters)

    def saves_at(self, iteration: int) -> bool:
        return iteration % self.checkpoint_interval == 0 or iteration == self.max_iters

    def logs_at(self, iteration: int) -> bool:
        return iteration % self.log_interval == 0 or iteration == self.max_iters


@dataclass
class RunConfig:
    """The resolved config plus the command line's choices."""

    cfg: dict
    config_path: Path
    work_dir: Path
    resume: bool | str = False
    amp: bool = False
    launcher: str = "none"
    compile: bool = False
    decode_cache: str = "off"  # --decode-cache: auto, off or a folder (see data/decoded_cache.py)
    decode_cache_gb: float = DEFAULT_MAX_GIB

    @functools.cached_property
    def cfg_text(self) -> str:
        """The config as Python text, as checkpoints and the log store it."""
        return config.pretty_text(self.cfg)

    def seed(self, info: dist.DistInfo) -> int:
        """`randomness.seed`, or a fresh random seed chosen on rank 0 (logged and stored in checkpoints)."""
        seed = _get(self.cfg, "randomness.seed")
        if seed is None:
            seed = dist.broadcast_object(random.SystemRandom().randrange(2**31))
            logger.info("randomness.seed is not set: using the random seed %d (stored in the checkpoints; "
                        "repeat the run with --cfg-options randomness.seed=%d)", seed, seed)
        return int(seed)

    def start_logging(self, info: dist.DistInfo, dump_config: bool = True) -> tuple[str, Path]:
        """Console + file log, config dump and the start-up block; returns (timestamp, log dir)."""
        setup_console(info.is_main)
        stamp = str(dist.broadcast_object(timestamp()))
        log_dir = self.work_dir / stamp
        if info.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            add_file_log(log_dir, stamp)
            if dump_config:
                config.dump(self.cfg, self.work_dir / self.config_path.name)
                config.dump(self.cfg, log_dir / "vis_data" / "config.py")
        logger.info(environment_block(info))
        logger.info("Config:\n%s", self.cfg_text)
        unused = [k for k in config.check_keys(self.cfg) if k.split(".")[0] != quickstart.CONFIG_KEY]
        if unused:
            logger.info("Config keys not used by dimatting (kept for mmagic compatibility): %s", ", ".join(unused))
        logger.info("Working directory: %s", self.work_dir)
        logger.info("Log directory: %s", log_dir.resolve())
        return stamp, log_dir


def environment_block(info: dist.DistInfo) -> str:
    """The reference's start-up summary, shortened to what matters here."""
    rule = "-" * 60
    lines = [
        rule,
        "System environment:",
        f"    sys.platform: {platform.system().lower()}",
        f"    Python: {platform.python_version()}",
        f"    CUDA available: {torch.cuda.is_available()}",
        f"    PyTorch: {torch.__version__}",
        f"    OpenCV: {cv2.__version__}",
        f"    NumPy: {np.__version__}",
        f"    dimatting: {__version__}",
        "",
        "Runtime environment:",
        f"    device: {info.device}",
        f"    threads: {torch.get_num_threads()}",
        f"    Distributed training: {info.distributed}",
        f"    World size: {info.world_size}",
        rule,
    ]
    return "\n" + "\n".join(lines)
