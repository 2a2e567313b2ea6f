"""Shared test fixtures.

`../shared/` (real samples and mmagic golden outputs) sits beside the checkout in CI and on developers'
machines, never inside the repo. In a user's fresh clone it is absent: tests that need it skip with the
reason. Under CI (CI=true) its absence is an error, so parity is never silently skipped.
"""

from __future__ import annotations

import os
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
