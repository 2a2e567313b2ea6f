"""Shared test fixtures.

`../shared/` (real samples and mmagic golden outputs) sits beside the checkout in CI and on developers'
machines, never inside the repo. In a user's fresh clone it is absent: tests that need it skip with the
reason. Under CI (CI=true) its absence is an error, so parity is never silently skipped.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path of ../shared; skips (or fails under CI) when it is missing."""
    if not (SHARED / "reference" / "golden").is_dir():
        message = f"{SHARED} (real samples and mmagic golden outputs) is not beside this checkout"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI must provide it")
        pytest.skip(message)
    return SHARED


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference" / "golden"


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return shared_dir / "data"


@pytest.fixture(scope="session", autouse=True)
def offline_downloads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """No test reaches the internet or the user's torch.hub cache, whatever code it runs.

    TORCH_HOME points at a session folder, and every http(s) request not for this machine goes to a proxy
    port that refuses connections (bound, never listening), so a download the tests forgot to redirect
    fails fast instead of fetching. Subprocesses inherit the environment. Yields the refusing port.
    """
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    port = refusing.getsockname()[1]
    proxy = f"http://127.0.0.1:{port}"
    settings = {"TORCH_HOME": str(tmp_path_factory.mktemp("torch_home")), "no_proxy": "127.0.0.1,localhost",
                "NO_PROXY": "127.0.0.1,localhost"}
    settings |= {name: proxy for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        yield port
    refusing.close()


@pytest.fixture
def refused_url(offline_downloads: int) -> str:
    """A URL on a local port that refuses connections."""
    return f"http://127.0.0.1:{offline_downloads}/refused-ckpt.pth"


@pytest.fixture(scope="session")
def serve_checkpoint(tmp_path_factory) -> Path:
    """A stage-3 DIM checkpoint with random weights, for the `dim serve` tests."""
    from tests.serve_helpers import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("serve") / "stage3.pth")


@pytest.fixture(scope="session")
def served(serve_checkpoint):
    """`dim serve`'s app on a free localhost port for the whole session (see tests/serve_helpers.py)."""
    from tests.serve_helpers import running_server

    with running_server(serve_checkpoint) as server:
        yield server


@pytest.fixture(autouse=True)
def restore_dimatting_logging() -> Iterator[None]:
    """Each test leaves the 'dimatting' logger as it found it: `dim` commands and training runs point it at
    their own streams (which pytest closes after the test) and stop its propagation, which would hide later
    tests' records from caplog."""
    logger = logging.getLogger("dimatting")
    saved = logger.handlers[:], logger.propagate, logger.level
    yield
    logger.handlers[:], logger.propagate, logger.level = saved
