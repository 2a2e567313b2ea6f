"""Stopping on SIGTERM / SIGINT the way a cluster job should: finish the iteration, save, exit non-zero.

SLURM and Kubernetes announce preemption with SIGTERM and kill the job a grace period later; Ctrl-C sends
SIGINT. The first signal only sets a flag: the loop finishes the current iteration, writes a checkpoint
(atomically, like every checkpoint) and raises `TrainingStopped`, whose exit status is 128 + the signal
number (143 for SIGTERM, 130 for SIGINT), as a shell reports a process killed by that signal. A second signal
restores the default action and re-sends itself: the process ends at once. Data-loader workers ignore both
signals (`ignore_stop_signals`), so Ctrl-C in a terminal, which reaches the whole process group, leaves the
decision to the training process instead of killing its workers mid-batch.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from dimatting.errors import DimattingError

logger = logging.getLogger("dimatting")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStopped(DimattingError):
    """Training stopped on a signal after saving a checkpoint; the exit status says which signal."""

    label = "stopped"

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum

    @classmethod
    def after_saving(cls, signum: int, iteration: int, checkpoint: Path | None) -> TrainingStopped:
        return cls(f"training stopped by {signal.Signals(signum).name} at iteration {iteration}; checkpoint saved "
                   f"to {checkpoint}; continue with --resume", signum)


class StopRequest:
    """Records the first SIGTERM/SIGINT while installed (a context manager); the loop polls `signum`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        logger.warning("%s received: finishing this iteration and saving a checkpoint (send it again to stop "
                       "at once, without saving)", signal.Signals(signum).name)


def ignore_stop_signals() -> None:
    """For data-loader workers: leave SIGTERM/SIGINT to the training process (it ends them when it exits)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
