"""A time budget, a hard stop and an always-on-disk report for the GPU benchmarks.

The GPU benchmarks (bench_gpu.py, bench_gpu_train.py, bf16_accuracy.py) run on a rarely lent machine under a hard
time limit (an outer `timeout`, the lease's end): whatever they measured must be on disk when that limit comes, and
what is on disk must say whether the run completed, what it was running when it was stopped and what it never
reached. `Budget` decides whether a row may still start, `hard_stop` stops a row that overruns the budget or the
outer limit's SIGTERM, and `Report` rewrites the markdown (atomically) before and after every row, ending in a
status line. Kept apart from the benchmarks so that each imports only this, not the others' dependencies.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGALRM, signal.SIGTERM)


class Budget:
    """Wall-clock budget of the whole run: a step starts only if `needed` seconds are left."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, needed: float = 0.0) -> bool:
        return self.left() > needed

    def shortfall(self, needed: float) -> str | None:
        """None if a row needing `needed` seconds may start, else the table cell saying why it is skipped."""
        return None if self.allows(needed) else f"skipped: budget ({max(self.left(), 0):.0f} s left, < {needed:.0f} s)"


class Stopped(BaseException):
    """Raised in the main thread at the budget's end or on SIGTERM (not an Exception: a row's `except Exception`
    must not swallow it)."""


def describe(exc: BaseException) -> str:
    """`Type: first line of the message` (at most 120 characters of it), for a table cell."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:120]}" if text else type(exc).__name__


def _labels(labels: list[str]) -> str:
    return ", ".join(f"`{label}`" for label in labels) or "none"


class Report:
    """A run's markdown so far (`lines`, printed as they come), rewritten to `path` atomically (temp file +
    rename) before and after every row and ending in a status line: a run killed at any moment leaves the rows it
    finished, the row it was running and the planned rows it had not reached."""

    def __init__(self, path: Path | None, lines: list[str]) -> None:
        self.path, self.lines = path, []
        self.pending: list[str] = []  # planned rows not finished yet (the running one included)
        self.skipped: list[str] = []  # rows skipped for the budget
        self.failed: list[str] = []  # rows that were running when their section failed
        self.running: str | None = None
        self.start = time.monotonic()
        self.add(*lines)

    def add(self, *lines: str) -> None:
        """Lines that are not rows (headings, table headers): written with the next row."""
        self.lines += lines
        print("\n".join(lines), flush=True)

    def plan(self, labels: list[str]) -> None:
        """Rows to come, in run order: listed as not run until they finish."""
        self.pending += labels
        self.write()

    def begin(self, label: str) -> None:
        self.running = label
        self.write()

    def row(self, label: str, line: str, skipped: bool = False) -> None:
        """Row `label` finished (measured or failed) as `line`, or was `skipped` (the budget)."""
        self.add(line)
        if skipped:
            self.skipped.append(label)
        if label in self.pending:
            self.pending.remove(label)
        self.running = None
        self.write()

    def section_failed(self, name: str, exc: BaseException) -> None:
        """A section ended by `exc` outside its rows' own error handling: the row it was running (if any) is
        recorded as failed with it; its rows not reached stay listed as not run."""
        where = f" in `{self.running}`" if self.running else ""
        self.add("", f"Section {name} failed{where}: {describe(exc)}")
        if self.running is not None:
            self.failed.append(self.running)
            if self.running in self.pending:
                self.pending.remove(self.running)
            self.running = None
        self.write()

    def status(self, stopped: str | None = None, done: bool = False) -> str:
        """The closing line: completed, or cut short (`stopped`: why, when the script saw it), with what did not
        run; a file killed mid-run keeps the line written last, which names the row then running."""
        elapsed = time.monotonic() - self.start
        if done:
            parts = [f"Completed in {elapsed:.0f} s"]
            if self.skipped:
                parts.append(f"skipped for the budget: {_labels(self.skipped)}")
            if self.failed:
                parts.append(f"failed with their section: {_labels(self.failed)}")
            if self.running is not None:  # begun, never finished (no row, no section_failed)
                parts.append(f"did not finish: `{self.running}`")
            not_run = [label for label in self.pending if label != self.running]
            if not_run:
                parts.append(f"did not run (a section failed): {_labels(not_run)}")
            return "; ".join(parts) + "."
        what = f"{stopped} {elapsed:.0f} s in" if stopped else f"killed or still running; written {elapsed:.0f} s in"
        running = f", while `{self.running}` ran" if self.running else ""
        not_run = [label for label in self.pending if label != self.running]  # the running one is named above
        return f"**Cut short** ({what}{running}). Not run: {_labels(not_run)}."

    def write(self, stopped: str | None = None, done: bool = False) -> None:
        if self.path is not None:
            from dimatting.io import write_text

            write_text(self.path, "\n".join([*self.lines, "", self.status(stopped, done)]) + "\n")


@contextlib.contextmanager
def hard_stop(report: Report, seconds: float | None) -> Iterator[None]:
    """Stop what runs after `seconds` (the budget's end: a row overrunning it; None: no time limit) or at SIGTERM
    (the outer `timeout`) by raising `Stopped` in the main thread; the report then says so and the script exits by
    itself (with 143 after a SIGTERM). The closing status is written with the timer disarmed and both signals
    ignored, and the handler raises at most once, so a second signal while the first is handled, or one during
    the final write, cannot turn a finished run into a cut-short one or escape as a traceback. An exception from
    the body is recorded in the status line, then propagates."""
    raised: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        if raised:  # already stopping (or done): the first stop's handling writes the report
            return
        raised.append(signum)
        raise Stopped("stopped at the budget's end" if signum == signal.SIGALRM else "terminated (SIGTERM)")

    previous = {sig: signal.signal(sig, stop) for sig in SIGNALS}
    if seconds is not None:
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    outcome: BaseException | None = None
    try:
        try:
            try:
                yield
            except BaseException as exc:  # Stopped, or what the body raised
                outcome = exc
            raised.append(0)  # from here on the handler raises no more
        except Stopped as exc:  # the one signal came after the body ended, before the line above
            outcome = exc
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if outcome is None:
            report.write(done=True)
            print(report.status(done=True), flush=True)
        else:
            why = (str(outcome) if isinstance(outcome, Stopped) else f"failed: {describe(outcome)}"
                   if isinstance(outcome, Exception) else f"stopped by {describe(outcome)}")
            report.write(stopped=why)
            print(report.status(stopped=why), flush=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if isinstance(outcome, Stopped):
        if "SIGTERM" in str(outcome):
            raise SystemExit(128 + signal.SIGTERM) from None
    elif outcome is not None:
        raise outcome
