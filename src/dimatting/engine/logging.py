"""Run logging in the reference's shape: console + `<work_dir>/<timestamp>/<timestamp>.log`, JSON-lines scalars.

Line formats follow mmengine's so that people (and their grep scripts) find what they know:
`Iter(train) [  k/max]  lr: 1.0000e-05  eta: 0:00:24  time: 6.1054  data_time: 0.0103  memory: 950  loss: ...`
and `Iter(val) [n/n]    SAD: ...  MattingMSE: ...`. Printed numbers are 10-iteration means with 4 decimals
(as the reference); the exact values go to `vis_data/scalars.json`, and every iteration's losses to
`vis_data/train_losses.json` (full precision, what the exact-resume test compares).
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
from collections import deque
from pathlib import Path

import psutil
import torch

LOGGER_NAME = "dimatting"
WINDOW = 10


class _Formatter(logging.Formatter):
    """`MM/DD HH:MM:SS - dimatting - LEVEL - message` (console) or with a 4-digit year (file)."""

    def __init__(self, year: bool) -> None:
        datefmt = "%Y/%m/%d %H:%M:%S" if year else "%m/%d %H:%M:%S"
        super().__init__("%(asctime)s - %(name)s - %(levelname)s - %(message)s", datefmt=datefmt)


def timestamp() -> str:
    """Local start time as the reference names its log folders: YYYYmmdd_HHMMSS."""
    return time.strftime("%Y%m%d_%H%M%S", time.localtime())


def setup_console(is_main: bool = True) -> logging.Logger:
    """Console logging for a run; ranks other than 0 print only errors (as the reference)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(_Formatter(year=False))
    console.setLevel(logging.INFO if is_main else logging.ERROR)
    logger.addHandler(console)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def add_file_log(log_dir: Path, stamp: str) -> Path:
    """Also write the run's log to `<log_dir>/<stamp>.log` (rank 0 only); returns the file's path."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{stamp}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_Formatter(year=True))
    logging.getLogger(LOGGER_NAME).addHandler(handler)
    return path


def error_to_files(message: str) -> None:
    """Record a fatal error in the run's log file; the console gets it once, from the command line's handler."""
    logger = logging.getLogger(LOGGER_NAME)
    record = logger.makeRecord(LOGGER_NAME, logging.ERROR, __file__, 0, message, None, None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def close_logs() -> None:
    """Flush and detach the run's console and file handlers, so that a later run in the same process (tests run
    several) does not write through handlers bound to streams that are gone."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True  # `setup_console` stopped propagation while the run printed its own lines


class JsonLines:
    """Append-only JSON-lines files, written through at once so a killed process keeps everything it logged
    (no fsync: that would make every log write wait for the disk, and a checkpoint, not the log, is what a
    run resumes from)."""

    def __init__(self, *paths: Path) -> None:
        self.paths = paths
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        self.write_many([record])

    def write_many(self, records: list[dict]) -> None:
        text = "".join(json.dumps(record) + "\n" for record in records)
        for path in self.paths:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)


class Window:
    """Moving means over the last 10 values of each scalar (the reference's log smoothing).

    Its contents are plain lists, saved in checkpoints so a resumed run prints the same means.
    """

    def __init__(self, history: dict[str, list[float]] | None = None) -> None:
        self.values: dict[str, deque[float]] = {
            key: deque(vals, maxlen=WINDOW) for key, vals in (history or {}).items()
        }

    def update(self, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.values.setdefault(key, deque(maxlen=WINDOW)).append(float(value))

    def mean(self, key: str) -> float:
        vals = self.values.get(key)
        return sum(vals) / len(vals) if vals else 0.0

    def state(self) -> dict[str, list[float]]:
        return {key: list(vals) for key, vals in self.values.items()}


def memory_mb(device: torch.device) -> int:
    """Peak CUDA memory since the last call (MiB, as the reference), or the process RSS on CPU."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) // 2**20
        torch.cuda.reset_peak_memory_stats(device)
        return int(peak)
    return int(psutil.Process().memory_info().rss // 2**20)


def eta_text(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(seconds, 0))))


def train_line(
    k: int, max_iters: int, lr: float, eta: float, window: Window, memory: int, loss_keys: list[str]
) -> str:
    """`Iter(train) [k/max]  lr: ..  eta: ..  time: ..  data_time: ..  memory: ..  loss: ..  loss_*: ..`."""
    width = len(str(max_iters))
    items = [
        f"Iter(train) [{k:>{width}}/{max_iters}]",
        f"lr: {lr:.4e}",
        f"eta: {eta_text(eta)}",
        f"time: {window.mean('time'):.4f}",
        f"data_time: {window.mean('data_time'):.4f}",
        f"memory: {memory}",
    ]
    items += [f"{key}: {window.mean(key):.4f}" for key in ["loss", *loss_keys]]
    return "  ".join(items)


def progress_line(mode: str, done: int, total: int, eta: float, seconds: float, data_seconds: float) -> str:
    """`Iter(val) [ 100/1000]    eta: ..  time: ..  data_time: ..  ` (the reference's every-100 progress)."""
    width = len(str(total))
    return (
        f"Iter({mode}) [{done:>{width}}/{total}]    eta: {eta_text(eta)}  time: {seconds:.4f}  "
        f"data_time: {data_seconds:.4f}  "
    )


def summary_line(mode: str, total: int, metrics: dict[str, float], data_seconds: float, seconds: float) -> str:
    """`Iter(val) [n/n]    SAD: ..  MattingMSE: ..  GradientError: ..  ConnectivityError: ..  data_time  time`."""
    items = [f"{name}: {value:.4f}" for name, value in metrics.items()]
    items += [f"data_time: {data_seconds:.4f}", f"time: {seconds:.4f}"]
    return f"Iter({mode}) [{total}/{total}]    " + "  ".join(items)
