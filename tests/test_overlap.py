"""The folder pipeline: every item loaded, started, finished and saved once; failures stay with their item."""

from __future__ import annotations

import threading
import time

import pytest

from dimatting.overlap import run_overlapped


class ItemError(Exception):
    pass


class Ready:
    def __init__(self, value):
        self.value = value

    def result(self):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


class Recorder:
    """load/start/save callables that log what happened, in which thread, and can fail for chosen items."""

    def __init__(self, fail: dict[str, set[int]] | None = None, delay: float = 0.0) -> None:
        self.fail = fail or {}
        self.delay = delay
        self.lock = threading.Lock()
        self.events: list[tuple[str, int, str]] = []
        self.waiting = 0  # loaded, not yet started
        self.most_waiting = 0

    def _log(self, stage: str, item: int) -> None:
        with self.lock:
            self.events.append((stage, item, threading.current_thread().name))
        if item in self.fail.get(stage, set()):
            raise ItemError(f"{stage} {item}")

    def load(self, item: int) -> int:
        time.sleep(self.delay)
        self._log("load", item)
        with self.lock:
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
        return item * 10

    def start(self, item: int, loaded: int) -> Ready:
        with self.lock:
            self.waiting -= 1
        self._log("start", item)
        return Ready(ItemError(f"result {item}") if item in self.fail.get("result", set()) else loaded + 1)

    def save(self, item: int, loaded: int, result: int) -> None:
        assert result == loaded + 1
        time.sleep(self.delay)
        self._log("save", item)

    def stage(self, name: str) -> list[int]:
        return [item for stage, item, _ in self.events if stage == name]


def _run(recorder: Recorder, items, workers: int) -> list[tuple[int, str]]:
    errors: list[tuple[int, str]] = []
    count = []
    run_overlapped(items, recorder.load, recorder.start, recorder.save, workers,
                   on_error=lambda item, exc: errors.append((item, str(exc))), errors=(ItemError,),
                   progress=lambda: count.append(1))
    assert len(count) == len(items)
    return errors


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_every_item_once_started_in_order(workers):
    recorder = Recorder(delay=0.001)
    items = list(range(20))
    assert _run(recorder, items, workers) == []
    assert sorted(recorder.stage("load")) == items and sorted(recorder.stage("save")) == items
    assert recorder.stage("start") == items  # the model sees the items in order
    main = threading.current_thread().name
    threads = {stage: {thread for s, _, thread in recorder.events if s == stage} for stage in ("load", "save")}
    if workers == 0:
        assert threads == {"load": {main}, "save": {main}}
    else:
        assert main not in threads["load"] | threads["save"]
        assert recorder.most_waiting <= 2 * workers + 1  # bounded look-ahead


@pytest.mark.parametrize("workers", [0, 2])
def test_failures_stay_with_their_item(workers):
    recorder = Recorder(fail={"load": {1}, "start": {3}, "result": {5}, "save": {7}})
    errors = _run(recorder, list(range(10)), workers)
    assert sorted(errors) == [(1, "load 1"), (3, "start 3"), (5, "result 5"), (7, "save 7")]
    assert sorted(recorder.stage("save")) == [0, 2, 4, 6, 7, 8, 9]  # 7 was attempted and failed


def test_other_exceptions_stop_the_run():
    recorder = Recorder()

    def start(item, loaded):
        if item == 2:
            raise KeyError("bug")
        return recorder.start(item, loaded)

    with pytest.raises(KeyError, match="bug"):
        run_overlapped(range(50), recorder.load, start, recorder.save, 2, on_error=lambda *a: None,
                       errors=(ItemError,))
    assert len(recorder.stage("load")) < 50  # stopped reading ahead
