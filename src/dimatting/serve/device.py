"""The device queue: one prediction on the model at a time, a bounded line of requests behind it.

A prediction takes seconds and most of the machine (CPU threads or GPU memory); two at once would only be
slower and could run out of memory. Requests are admitted when they arrive, before their body is read, so
that a full queue answers 503 at once instead of accepting uploads it cannot serve soon. Admitted requests
wait in arrival order (asyncio's lock is fair) and each can be watched through its `Progress`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.exceptions import HTTPException


@dataclass
class Progress:
    """Where one prediction request stands (GET /api/progress/<id>)."""

    stage: str = "receiving"  # receiving -> waiting -> predicting -> cutout (output=cutout) -> done
    ahead: int = 0  # requests before this one in the line for the model (the running one included)
    done: int = 0  # tiles predicted so far
    total: int = 0  # tiles in all; 0 while unknown or when the image runs whole

    def as_json(self) -> dict[str, object]:
        return {"stage": self.stage, "ahead": self.ahead, "done": self.done, "total": self.total}


class DeviceQueue:
    """At most one request holds the model and at most `size` more are admitted behind it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.admitted = 0
        self.watched: dict[str, Progress] = {}  # client-chosen id -> progress, while the request lasts
        self._line: list[Progress] = []  # requests holding or waiting for the model, in order
        self._model = asyncio.Lock()

    @property
    def running(self) -> int:
        return 1 if self._model.locked() else 0

    @contextlib.asynccontextmanager
    async def admit(self, watch_id: str | None) -> AsyncIterator[Progress]:
        """Admit a request (503 when the queue is full), for as long as the block runs."""
        if self.admitted > self.size:
            raise HTTPException(
                503, f"the server is busy ({self.admitted} prediction(s) running or waiting, queue of {self.size} "
                "full); try again in a moment or restart dim serve with a larger --queue-size",
                headers={"Retry-After": "5"},
            )
        if watch_id is not None and watch_id in self.watched:
            raise HTTPException(400, f"progress id '{watch_id}' is already in use; pick a fresh random one")
        progress = Progress()
        self.admitted += 1
        if watch_id is not None:
            self.watched[watch_id] = progress
        try:
            yield progress
        finally:
            self.admitted -= 1
            if watch_id is not None:
                del self.watched[watch_id]

    @contextlib.asynccontextmanager
    async def model(self, progress: Progress) -> AsyncIterator[None]:
        """Wait for the model in arrival order, then hold it for the block."""
        progress.stage = "waiting"
        self._line.append(progress)
        self._renumber()
        try:
            async with self._model:
                yield
        finally:
            self._line.remove(progress)
            self._renumber()

    def _renumber(self) -> None:
        for ahead, progress in enumerate(self._line):
            progress.ahead = ahead
