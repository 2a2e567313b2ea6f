"""SIGTERM/SIGINT handling: the first signal is recorded, a second one ends the process at once.

Signals are sent to a child Python process (a signal to the test process itself would end pytest).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from dimatting.engine.preemption import TrainingStopped

CHILD = textwrap.dedent("""
    import logging, os, signal, sys
    from dimatting.engine.preemption import StopRequest, ignore_stop_signals
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sig = getattr(signal, sys.argv[1])
    with StopRequest() as stop:
        os.kill(os.getpid(), sig)
        print("first:", stop.signum == sig, flush=True)
        if sys.argv[2] == "twice":
            os.kill(os.getpid(), sig)
            print("still running after the second signal", flush=True)
    print("handlers restored:", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, flush=True)
    ignore_stop_signals()
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)
    print("ignored", flush=True)
""")


def _child(name: str, times: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, name, times], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_first_signal_is_recorded_and_the_handlers_are_restored(name: str) -> None:
    proc = _child(name, "once")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["first: True", "handlers restored: True", "ignored"]
    assert f"{name} received: finishing this iteration and saving a checkpoint" in proc.stderr


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_second_signal_ends_the_process_at_once(name: str) -> None:
    proc = _child(name, "twice")
    assert proc.returncode == -getattr(signal, name)
    assert proc.stdout.splitlines() == ["first: True"]


def test_the_exit_status_names_the_signal() -> None:
    stopped = TrainingStopped.after_saving(signal.SIGTERM, 7, None)
    assert stopped.exit_code == 143 and stopped.label == "stopped"
    assert str(stopped).startswith("training stopped by SIGTERM at iteration 7")
    assert TrainingStopped.after_saving(signal.SIGINT, 1, None).exit_code == 130
