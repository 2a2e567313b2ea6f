"""A training/test run's settings, read once from the config (DESIGN.md "Keys the engine honours").

Keeping the config lookups here leaves the loop in `trainer.py` free of `.get(..., default)` chains.
"""

from __future__ import annotations

import logging
import platform
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from dimatting import __version__, config
from dimatting.engine import checkpointing, dist
from dimatting.engine.evaluation import EVALUATOR_TYPES, REFERENCE_NAMES
from dimatting.engine.logging import add_file_log, setup_console, timestamp
from dimatting.engine.sampler import InfiniteSeededSampler
from dimatting.errors import ConfigError

logger = logging.getLogger("dimatting")

# Top-level keys of ours that only the quickstart uses (handled by `launch.py`).
ENGINE_KEYS = ("quickstart",)


def _get(cfg: dict, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


@dataclass
class RunConfig:
    """The resolved config plus the command line's choices."""

    cfg: dict
    config_path: Path
    work_dir: Path
    resume: bool | str = False
    amp: bool = False
    launcher: str = "none"
    cfg_text: str = field(default="", repr=False)

    # ---- keys ---------------------------------------------------------------------------------------
    @property
    def max_iters(self) -> int:
        value = _get(self.cfg, "train_cfg.max_iters")
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{self.config_path}: train_cfg.max_iters must be a positive integer, got {value!r}")
        return value

    @property
    def val_interval(self) -> int:
        return int(_get(self.cfg, "train_cfg.val_interval") or self.max_iters)

    @property
    def validates(self) -> bool:
        return bool(_get(self.cfg, "val_dataloader.dataset")) and self.cfg.get("val_evaluator") is not None

    @property
    def val_workers(self) -> int:
        return int(_get(self.cfg, "val_dataloader.num_workers", 0) or 0)

    @property
    def checkpoint_interval(self) -> int:
        return int(_get(self.cfg, "default_hooks.checkpoint.interval") or self.max_iters)

    @property
    def max_keep_ckpts(self) -> int:
        return int(_get(self.cfg, "default_hooks.checkpoint.max_keep_ckpts", -1))

    @property
    def best_metric(self) -> str | None:
        """Our key of the metric whose best value is kept (`save_best`; absent -> SAD, None -> none)."""
        hook = _get(self.cfg, "default_hooks.checkpoint", {}) or {}
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

    @property
    def log_interval(self) -> int:
        return int(_get(self.cfg, "default_hooks.logger.interval", 100) or 100)

    @property
    def deterministic(self) -> bool:
        return bool(_get(self.cfg, "randomness.deterministic", False))

    @property
    def cudnn_benchmark(self) -> bool:
        """cuDNN's autotuner (`env_cfg.cudnn_benchmark`; the seed configs keep the reference's False)."""
        return bool(_get(self.cfg, "env_cfg.cudnn_benchmark", False))

    @property
    def experiment_name(self) -> str:
        return str(self.cfg.get("experiment_name") or self.config_path.stem)

    def seed(self, info: dist.DistInfo) -> int:
        """`randomness.seed`, or a fresh random seed chosen on rank 0 (logged and stored in checkpoints)."""
        seed = _get(self.cfg, "randomness.seed")
        if seed is None:
            seed = dist.broadcast_object(random.SystemRandom().randrange(2**31))
            logger.info("randomness.seed is not set: using the random seed %d (stored in the checkpoints; "
                        "repeat the run with --cfg-options randomness.seed=%d)", seed, seed)
        return int(seed)

    def train_sampler(self, length: int, seed: int, info: dist.DistInfo, start: int) -> InfiniteSeededSampler:
        shuffle = bool(_get(self.cfg, "train_dataloader.sampler.shuffle", True))
        return InfiniteSeededSampler(length, seed, info.rank, info.world_size, start=start, shuffle=shuffle)

    # ---- start-up -----------------------------------------------------------------------------------
    def start_logging(self, info: dist.DistInfo, dump_config: bool = True) -> tuple[str, Path]:
        """Console + file log, config dump and the start-up block; returns (timestamp, log dir)."""
        setup_console(info.is_main)
        stamp = str(dist.broadcast_object(timestamp()))
        log_dir = self.work_dir / stamp
        self.cfg_text = config.pretty_text(self.cfg)
        if info.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            add_file_log(log_dir, stamp)
            if dump_config:
                config.dump(self.cfg, self.work_dir / self.config_path.name)
                config.dump(self.cfg, log_dir / "vis_data" / "config.py")
        logger.info(environment_block(info))
        logger.info("Config:\n%s", self.cfg_text)
        unused = [k for k in config.check_keys(self.cfg) if k.split(".")[0] not in ENGINE_KEYS]
        if unused:
            logger.info("Config keys not used by dimatting (kept for mmagic compatibility): %s", ", ".join(unused))
        logger.info("Working directory: %s", self.work_dir)
        logger.info("Log directory: %s", log_dir.resolve())
        return stamp, log_dir

    def payload(self, model, optimizer, scaler, iteration: int, seed: int, state: dict, stamp: str) -> dict:
        return checkpointing.payload(
            model, optimizer, iteration, seed, self.cfg_text, f"{self.experiment_name}_{stamp}", state, scaler
        )


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
