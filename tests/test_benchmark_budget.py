"""benchmarks/budget.py: what a GPU benchmark leaves on disk when its budget ends, a SIGTERM comes, a section fails
or it completes (the status line must tell which, and name what did not run)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    imported = "budget" not in sys.modules
    import budget

    yield budget
    if imported:
        sys.modules.pop("budget", None)


@pytest.fixture
def clean_signals():
    """The test process's own handlers and timer, checked to be back after each test."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGALRM, signal.SIGTERM)}
    yield
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def status(path: Path) -> str:
    return path.read_text().rstrip().splitlines()[-1]


def planned(budget, path: Path):
    report = budget.Report(path, ["# bench", "", "| row |", "|---|"])
    report.plan(["a", "b", "c"])
    return report


def test_the_budget_end_stops_the_running_row_and_the_file_names_it_and_the_rows_not_run(
        tmp_path: Path, budget, clean_signals) -> None:
    out = tmp_path / "out.md"
    report = planned(budget, out)
    with budget.hard_stop(report, 0.2):
        report.begin("a")
        report.row("a", "| a |")
        report.begin("b")
        time.sleep(2)  # stopped by the alarm long before
        pytest.fail("the alarm did not stop the row")
    assert "| a |" in out.read_text().splitlines()
    line = status(out)
    assert line.startswith("**Cut short** (stopped at the budget's end") and "while `b` ran" in line
    assert line.endswith("Not run: `c`.")


def test_a_sigterm_stops_the_script_with_143_and_the_file_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out.md"
    proc = subprocess.Popen([sys.executable, "-c", script(out, "report.begin('a')\nprint('ready', flush=True)\n"
                                                                 "time.sleep(60)\n")],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "ready":
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
    finally:
        proc.kill()
        proc.wait()
    line = status(out)
    assert line.startswith("**Cut short** (terminated (SIGTERM)") and line.endswith("while `a` ran). Not run: `b`.")


def script(out: Path, body: str, seconds: float = 60, report_class: str = "Report") -> str:
    return textwrap.dedent(f"""\
        import os, signal, sys, threading, time
        from pathlib import Path
        sys.path.insert(0, {str(BENCHMARKS)!r})
        from budget import Report, hard_stop

        class TermOnWrite(Report):  # a SIGTERM and an alarm exactly while the closing status is written
            def write(self, stopped=None, done=False):
                if stopped or done:
                    os.kill(os.getpid(), signal.SIGTERM)
                    signal.raise_signal(signal.SIGALRM)
                super().write(stopped, done)

        report = {report_class}(Path({str(out)!r}), ["# bench"])
        report.plan(["a", "b"])
        with hard_stop(report, {seconds}):
        """) + textwrap.indent(body, "    ")


BOTH_AT_ONCE = """\
report.begin('a')
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM})
signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)  # both pending in this thread
signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM, signal.SIGTERM})  # the alarm's stop, then the TERM
time.sleep(30)
"""


@pytest.mark.parametrize(("seconds", "report_class", "body", "expected"), [
    # the alarm stops row `a`; a SIGTERM and another alarm while that stop's status is written
    (0.1, "TermOnWrite", "report.begin('a')\ntime.sleep(30)\n", "**Cut short** (stopped at the budget's end"),
    # a SIGTERM handled right after the alarm's stop, while that stop unwinds
    (60, "Report", BOTH_AT_ONCE, "**Cut short** (stopped at the budget's end"),
    # every row finished: signals during the closing write must not make it a cut-short run
    (60, "TermOnWrite", "report.row('a', '| a |')\nreport.row('b', '| b |')\n", "Completed in"),
], ids=["term-while-writing-the-stop", "term-while-stopping", "term-while-writing-completed"])
def test_signals_while_the_run_ends_are_ignored(tmp_path: Path, seconds: float, report_class: str, body: str,
                                                expected: str) -> None:
    out = tmp_path / "out.md"
    proc = subprocess.run([sys.executable, "-c", script(out, body, seconds, report_class)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert status(out).startswith(expected)


def test_a_completed_run_says_so_and_lists_the_rows_skipped_for_the_budget(tmp_path: Path, budget,
                                                                          clean_signals) -> None:
    out = tmp_path / "out.md"
    report = planned(budget, out)
    with budget.hard_stop(report, 60):
        report.begin("a")
        report.row("a", "| a |")
        report.row("b", "| b skipped |", skipped=True)
        report.begin("c")
        report.row("c", "| c failed: ValueError: x |")
    assert out.read_text().splitlines()[-5:-2] == ["| a |", "| b skipped |", "| c failed: ValueError: x |"]
    assert status(out).startswith("Completed in ") and status(out).endswith(" s; skipped for the budget: `b`.")


def test_an_alarm_during_the_closing_write_leaves_a_completed_run_completed(tmp_path: Path, budget,
                                                                          clean_signals) -> None:
    class AlarmOnWrite(budget.Report):
        def write(self, stopped: str | None = None, done: bool = False) -> None:
            if done:  # the timer fires exactly now
                signal.raise_signal(signal.SIGALRM)
            super().write(stopped, done)

    out = tmp_path / "out.md"
    report = AlarmOnWrite(out, ["# bench"])
    report.plan(["a"])
    with budget.hard_stop(report, 60):
        report.row("a", "| a |")
    assert status(out).startswith("Completed in ")


def test_a_section_failing_after_begin_is_not_reported_as_nothing_left_out(tmp_path: Path, budget) -> None:
    report = planned(budget, tmp_path / "out.md")
    report.begin("a")  # a section that dies here, without a row and without section_failed
    line = report.status(done=True)
    assert "did not finish: `a`" in line and "did not run (a section failed): `b`, `c`" in line
    assert "none" not in line
    report.section_failed("predict", RuntimeError("boom\nmore"))
    assert report.lines[-1] == "Section predict failed in `a`: RuntimeError: boom"
    line = report.status(done=True)
    assert "failed with their section: `a`" in line and line.endswith("did not run (a section failed): `b`, `c`.")
    cut = report.status(stopped="stopped at the budget's end")
    assert cut.endswith("Not run: `b`, `c`.") and "while" not in cut
    # the last section failing on its last row: that row is named, no "did not run ...: none"
    for label in ("b", "c"):
        report.row(label, f"| {label} |")
    report.begin("c2")
    report.plan(["c2"])
    assert report.status(done=True).endswith("; did not finish: `c2`.")


def test_an_error_out_of_the_body_is_written_as_the_status_and_raised(tmp_path: Path, budget,
                                                                     clean_signals) -> None:
    out = tmp_path / "out.md"
    report = planned(budget, out)
    with pytest.raises(ValueError, match="broken"), budget.hard_stop(report, 60):
        report.begin("a")
        raise ValueError("broken")
    assert status(out).startswith("**Cut short** (failed: ValueError: broken ")
    assert status(out).endswith("while `a` ran). Not run: `b`, `c`.")
