"""Folders at the speed of the slowest stage: files are read ahead and written behind in threads while the
main thread keeps the model busy.

Decoding a 4096x4096 PNG takes longer than a GPU needs to matte it, and encoding the alpha nearly as long;
one after the other they leave the GPU idle most of the time (and one of two CPU cores idle while a PNG is
decoded). OpenCV and NumPy release the GIL while they work, so plain threads overlap them with the network
and with each other. The main thread starts an item before it waits for the previous one's result, so an
asynchronous device always has the next item queued. Every item is loaded, computed and saved once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")
Result = TypeVar("Result")


class Pending(Protocol[Result]):
    """What `start` returns: the result may still be on its way (e.g. `dimatting.accel.PendingAlpha`)."""

    def result(self) -> Result: ...


def run_overlapped(
    items: Iterable[Item],
    load: Callable[[Item], Loaded],
    start: Callable[[Item, Loaded], Pending[Result]],
    save: Callable[[Item, Loaded, Result], None],
    workers: int,
    on_error: Callable[[Item, Exception], None],
    errors: tuple[type[Exception], ...],
    progress: Callable[[], None] | None = None,
) -> None:
    """load -> start -> result -> save for every item; `load` and `save` in `workers` threads (0: all in
    this thread, one item after the other), `start` and `result` in this thread, in item order.

    An exception of a type in `errors` fails only its item (`on_error(item, exc)`, called in this thread);
    any other stops the run and is raised once the threads have finished what they were doing. At most
    2 x `workers` items wait loaded and 2 x `workers` wait to be saved, which bounds memory.
    """
    if workers <= 0:
        for item in items:
            try:
                loaded = load(item)
                save(item, loaded, start(item, loaded).result())
            except errors as exc:
                on_error(item, exc)
            if progress is not None:
                progress()
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="dimatting-io")
    try:
        _pipeline(iter(items), pool, load, start, save, 2 * workers, on_error, errors, progress)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pipeline(items, pool, load, start, save, depth, on_error, errors, progress) -> None:
    loads: deque[tuple[object, Future]] = deque()
    saves: deque[tuple[object, Future]] = deque()
    in_flight = None  # (item, loaded, pending) started but not finished

    def read_ahead() -> None:
        while len(loads) < depth and (item := next(items, _END)) is not _END:
            loads.append((item, pool.submit(load, item)))

    def collect_saves(keep: int) -> None:
        while saves and (len(saves) > keep or saves[0][1].done()):
            item, future = saves.popleft()
            try:
                future.result()
            except errors as exc:
                on_error(item, exc)

    read_ahead()
    while loads or in_flight is not None:
        started = None
        if loads:
            item, future = loads.popleft()
            read_ahead()
            try:
                loaded = future.result()
                started = (item, loaded, start(item, loaded))
            except errors as exc:
                on_error(item, exc)
                if progress is not None:
                    progress()
        if in_flight is not None:
            item, loaded, pending = in_flight
            try:
                saves.append((item, pool.submit(save, item, loaded, pending.result())))
            except errors as exc:
                on_error(item, exc)
            if progress is not None:
                progress()
        in_flight = started
        collect_saves(keep=depth)
    collect_saves(keep=0)


_END = object()
