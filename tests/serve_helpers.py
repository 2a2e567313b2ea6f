"""Test helpers for `dim serve`: a real checkpoint, the real app on a free localhost port, a gate that holds
predictions (to watch the queue at work), sample files, and the system's Chromium for the page tests."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from dimatting.trimap import trimap_from_mask

CHROMIUM = "/usr/bin/chromium"  # Debian's package; never a browser downloaded by `playwright install`
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# the served model tiles images above this many pixels, in 64 px tiles: 256x176 runs as 20 tiles
TILE_FLAGS = {"tile_size": 64, "tile_overlap": 16, "tile_threshold": 40_000}
CLI_TILE_FLAGS = [text for key, value in TILE_FLAGS.items() for text in (f"--{key.replace('_', '-')}", str(value))]
LIMITS = {"max_upload_bytes": 1024 * 1024, "max_pixels": 60_000, "queue_size": 1}


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    """A stage-3 DIM checkpoint (the real keys and shapes, random weights) in mmagic's file layout."""
    import torch

    from dimatting.checkpoint import save_checkpoint
    from dimatting.models import build_dim

    torch.manual_seed(seed)
    save_checkpoint(path, {"meta": {"iter": 0}, "state_dict": build_dim(with_refiner=True).state_dict()})
    return path


class GatedMatter:
    """A real `Matter` whose predictions wait while `gate` is clear, counting how many run at once."""

    def __init__(self, matter: object) -> None:
        self._matter = matter
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self._count = threading.Lock()

    def __getattr__(self, name: str) -> object:
        return getattr(self._matter, name)

    def predict(self, *args: object, **kwargs: object) -> np.ndarray:
        with self._count:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            assert self.gate.wait(120), "a test left the gate closed"
            return self._matter.predict(*args, **kwargs)
        finally:
            with self._count:
                self.running -= 1


@dataclass
class Served:
    url: str
    matter: GatedMatter


@contextlib.contextmanager
def running_server(checkpoint: Path) -> Iterator[Served]:
    """`dim serve`'s app for `checkpoint` (CPU, `LIMITS`, `TILE_FLAGS`) served by uvicorn in a thread."""
    import uvicorn

    from dimatting.inference import load_model
    from dimatting.serve.app import Settings, create_app
    from dimatting.serve.guard import allowed_hosts_for
    from dimatting.serve.server import bind, url_of

    matter = GatedMatter(load_model(checkpoint, device="cpu", **TILE_FLAGS))
    settings = Settings(**LIMITS, allowed_hosts=allowed_hosts_for("127.0.0.1"), checkpoint=checkpoint.name)
    with bind("127.0.0.1", 0) as sock:
        server = uvicorn.Server(uvicorn.Config(create_app(matter, settings), log_config=None, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield Served(url_of(sock).rstrip("/"), matter)
        finally:
            server.should_exit = True
            thread.join(30)


def write_sample(folder: Path, width: int, height: int, stem: str = "photo", seed: int = 0) -> dict[str, Path]:
    """A smooth random photo with an elliptical object: its PNG, a rough mask and a trimap (band 6 px)."""
    rng = np.random.default_rng(seed)
    photo = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (width // 2, height // 2), (width // 4, height // 3), 20, 0, 360, 255, -1)
    photo[mask > 0] = 255 - photo[mask > 0]
    files = {"image": folder / f"{stem}.png", "mask": folder / f"{stem}_mask.png",
             "trimap": folder / f"{stem}_trimap.png"}
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(files["image"]), photo)
    cv2.imwrite(str(files["mask"]), mask)
    cv2.imwrite(str(files["trimap"]), trimap_from_mask(mask, band=6))
    return files


def require_chromium() -> None:
    """Skip when Playwright or the system Chromium is missing; under CI (CI=true) fail instead."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "the playwright package is missing (pip install -e '.[dev]')"
    if reason is None and not Path(CHROMIUM).is_file():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)


@contextlib.contextmanager
def chromium_page(profile: Path, width: int = 1280, height: int = 800) -> Iterator[object]:
    """A page in a fresh headless Chromium profile (the system browser, driven by Playwright)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height}, accept_downloads=True,
        )
        try:
            yield context.new_page()
        finally:
            context.close()
