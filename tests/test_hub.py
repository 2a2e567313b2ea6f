"""Checkpoints by URL and by name, against a real HTTP server on localhost (tests/http_server.py).

Every test gets its own torch.hub cache ($TORCH_HOME in a temporary folder); conftest.py makes any request
for another host fail, so nothing here can reach the internet or the user's cache.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dimatting import cli, hub, released
from dimatting.checkpoint import extract_state_dict, load_checkpoint
from dimatting.errors import CheckpointError
from dimatting.hub import DownloadError, resolve_checkpoint
from dimatting.io import write_image
from dimatting.models import build_dim
from tests.http_server import FileServer, save_hashed

STAGE3 = "dim_stage3-v16-pln_1xb1-1000k_comp1k"


@pytest.fixture(scope="module")
def dim_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-3 DIM checkpoint with the real keys and shapes, laid out like mmagic's (meta + state_dict),
    named `dim_stage3_test-<sha256 prefix>.pth`. The meta holds a numpy array, as mmagic's files do."""
    torch.manual_seed(0)
    model = build_dim(with_refiner=True)
    ckpt = {"meta": {"iter": 7, "history": np.arange(3.0)}, "state_dict": model.state_dict()}
    return save_hashed(ckpt, tmp_path_factory.mktemp("ckpt"), "dim_stage3_test")


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def server(tmp_path: Path):
    with FileServer(tmp_path / "served") as running:
        yield running


def _cached(cache: Path) -> list[str]:
    """Files in the cache, lock files (hidden, empty) left out: temporary files would show up here."""
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) if cache.is_dir() else []


def test_url_is_downloaded_once_cached_and_loaded_weights_only(dim_checkpoint, server, torch_home) -> None:
    name = server.add(dim_checkpoint)
    url = server.url(name)
    ckpt = load_checkpoint(url)
    assert ckpt["meta"]["iter"] == 7 and list(ckpt["meta"]["history"]) == [0.0, 1.0, 2.0]
    expected = load_checkpoint(dim_checkpoint)["state_dict"]
    state = extract_state_dict(ckpt)
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)
    assert _cached(torch_home) == [name]
    assert (torch_home / name).read_bytes() == dim_checkpoint.read_bytes()
    assert server.hits(name) == 1

    assert resolve_checkpoint(url) == torch_home / name
    assert server.hits(name) == 1  # the second run makes no request
    server.close()
    assert resolve_checkpoint(url) == torch_home / name  # the host gone, the cached file still works


def test_file_url_and_local_paths(dim_checkpoint, torch_home) -> None:
    assert resolve_checkpoint(str(dim_checkpoint)) == dim_checkpoint
    assert resolve_checkpoint(dim_checkpoint) == dim_checkpoint
    cached = resolve_checkpoint(dim_checkpoint.as_uri())
    assert cached == torch_home / dim_checkpoint.name and cached.read_bytes() == dim_checkpoint.read_bytes()
    missing = Path("no/such/ckpt.pth")
    assert resolve_checkpoint(str(missing)) == missing  # callers say "not found" in their own words


def test_wrong_hash_suffix_is_an_error_and_caches_nothing(dim_checkpoint, server, torch_home) -> None:
    name = server.add(dim_checkpoint, "dim_stage3_test-0badc0de.pth")
    with pytest.raises(DownloadError) as info:
        resolve_checkpoint(server.url(name))
    message = str(info.value)
    assert message.startswith(server.url(name)) and "\n" not in message
    assert "sha256" in message and "0badc0de" in message and str(torch_home / name) in message
    assert _cached(torch_home) == []


@pytest.mark.parametrize("mode, reason", [
    ("404", "HTTP 404 Not Found"),
    ("500", "HTTP 500 Internal Server Error"),
    ("short", "body cut short: the connection closed after"),
    ("stall", "no data for 0.5 s (timed out)"),
    ("stallbody", "no data for 0.5 s (timed out)"),
])
def test_server_failures_are_one_line_and_leave_no_file(mode, reason, server, torch_home) -> None:
    server.root.joinpath("ckpt.pth").write_bytes(os.urandom(3 * hub.CHUNK // 2))
    url = server.url("absent.pth") if mode == "404" else server.url("ckpt.pth", mode)
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        resolve_checkpoint(url, timeout=0.5)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert message.startswith(f"{url}: download failed: {reason}") and "\n" not in message
    assert f"download it by hand to {torch_home / Path(url).name}" in message
    assert _cached(torch_home) == []


def test_refused_offline_and_unsupported_urls(refused_url, torch_home, monkeypatch) -> None:
    with pytest.raises(DownloadError, match=r"refused-ckpt\.pth: download failed: connection refused; download it"):
        resolve_checkpoint(refused_url)
    with pytest.raises(DownloadError, match="unsupported URL scheme 'ftp'; use an http, https or file URL"):
        resolve_checkpoint("ftp://example.org/x.pth")
    with pytest.raises(DownloadError, match="download failed: no such file"):
        resolve_checkpoint("file:///no/such/dir/x.pth")

    def no_dns(*args: object, **kwargs: object):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setenv("no_proxy", "*")  # straight to the (failing) name lookup, as on a machine without proxy
    with pytest.raises(DownloadError, match=r"cannot resolve the host \(Name or service not known\); offline"):
        resolve_checkpoint("https://download.example.invalid/x.pth")
    assert _cached(torch_home) == []


def test_cli_prints_the_download_error_on_one_line(refused_url, torch_home, capsys) -> None:
    assert cli.main(["export-onnx", "--checkpoint", refused_url, "-o", str(torch_home / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"INFO: Downloading {refused_url} to {torch_home}")
    assert err[1].startswith(f"error: {refused_url}: download failed: connection refused") and len(err) == 2


def test_checkpoint_options_keep_urls_intact() -> None:
    url = "https://download.openmmlab.com/a/b-647f24b6.pth"
    parser = cli.build_parser()
    assert parser.parse_args(["export-onnx", "--checkpoint", url, "-o", "x.onnx"]).checkpoint == url
    predict = ["predict", "--checkpoint", url, "--image", "a", "--trimap", "b", "-o", "c"]
    assert parser.parse_args(predict).checkpoint == url


_FETCH = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
    "from dimatting.hub import resolve_checkpoint\n"
    "print(resolve_checkpoint(sys.argv[1]))\n"
)


def test_two_processes_fetching_one_url_download_it_once(dim_checkpoint, server, torch_home) -> None:
    """Two independent processes (as the ranks of a torchrun job) ask for one URL at once: the server
    holds the first download open until the second says it waits for it; one request, one good file."""
    name = server.add(dim_checkpoint)
    url = server.url(name, "gate")
    procs = [subprocess.Popen([sys.executable, "-c", _FETCH, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        waiting = [p for p in procs if _wait_for_line(p, "another process is downloading it", deadline)]
        assert len(waiting) == 1, "exactly one process must wait for the other's download"
        server.release.set()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert {out.strip() for out, _ in outputs} == {str(torch_home / name)}
    assert server.hits(name) == 1
    assert _cached(torch_home) == [name] and (torch_home / name).read_bytes() == dim_checkpoint.read_bytes()


def _wait_for_line(proc: subprocess.Popen, text: str, deadline: float) -> bool:
    """Read `proc`'s stderr until a line holds `text` (True) or "Downloading" shows it fetches (False)."""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if text in line:
            return True
        if "Downloading" in line or not line:
            return False
    return False


@pytest.fixture
def released_from(server, dim_checkpoint, monkeypatch):
    """The stage-3 name pointed at the test checkpoint on the local server (a mirror, $DIMATTING_RELEASE_URL)."""
    name = server.add(dim_checkpoint)
    monkeypatch.setenv(released.RELEASE_URL_ENV, server.base + "/files/")
    monkeypatch.setitem(released.RELEASED, STAGE3, dataclasses.replace(released.RELEASED[STAGE3], filename=name))
    return name


def test_released_names_are_the_seed_urls() -> None:
    assert released.RELEASED[STAGE3].url == (
        "https://download.openmmlab.com/mmediting/mattors/dim/"
        "dim_stage3_v16_pln_1x1_1000k_comp1k_SAD-50.6_20200609_111851-647f24b6.pth"
    )
    assert sorted(released.RELEASED) == sorted(
        ["dim_stage1-v16_1xb1-1000k_comp1k", "dim_stage2-v16-pln_1xb1-1000k_comp1k", STAGE3]
    )
    assert all(hub.expected_sha256_prefix(m.filename) for m in released.RELEASED.values())
    assert hub.expected_sha256_prefix("dim_stage3_v16_pln_1x1_1000k_comp1k_SAD-50.6_20200609_111851-647f24b6.pth") \
        == "647f24b6"
    assert hub.expected_sha256_prefix("vgg16-397923af.pth") == "397923af"
    assert hub.expected_sha256_prefix("iter_2.pth") is None


def test_a_name_resolves_to_its_download(released_from, server, torch_home) -> None:
    assert resolve_checkpoint(STAGE3) == torch_home / released_from
    assert load_checkpoint(STAGE3)["meta"]["iter"] == 7
    assert server.hits(released_from) == 1


def test_a_mirror_with_other_bytes_is_refused(dim_checkpoint, server, torch_home, monkeypatch) -> None:
    real_name = released.RELEASED[STAGE3].filename
    server.add(dim_checkpoint, real_name)
    monkeypatch.setenv(released.RELEASE_URL_ENV, server.base + "/files")
    with pytest.raises(DownloadError, match="name promises one starting with 647f24b6"):
        resolve_checkpoint(STAGE3)
    assert _cached(torch_home) == []


def test_a_near_miss_of_a_name_suggests_it() -> None:
    with pytest.raises(CheckpointError, match=f"did you mean '{STAGE3}'.*dim models"):
        resolve_checkpoint("dim_stage3-v16-pln_1xb1-1000k_comp1")


def test_dim_models_lists_names_metrics_urls_and_the_cache(released_from, torch_home, capsys) -> None:
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "stage", "SAD", "MSE", "GRAD", "CONN", "cached", "url"]
    stage1 = next(line.split() for line in lines if line.startswith("dim_stage1-"))
    assert stage1[1:7] == ["1", "53.8", "0.017", "32.7", "54.5", "no"]
    assert stage1[7] == released.RELEASED[stage1[0]].url and stage1[7].endswith("-979a420f.pth")
    assert str(torch_home) in lines[-1]
    resolve_checkpoint(STAGE3)
    cli.main(["models"])
    stage3 = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(STAGE3))
    assert stage3[6] == "yes"


def test_dim_predict_with_a_released_name(released_from, tmp_path, torch_home, capsys) -> None:
    rng = np.random.default_rng(0)
    trimap = np.zeros((32, 32), np.uint8)
    trimap[8:24, 8:24] = 128
    write_image(tmp_path / "a.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    write_image(tmp_path / "t.png", trimap)
    assert cli.main(["predict", "--image", str(tmp_path / "a.png"), "--trimap", str(tmp_path / "t.png"),
                     "--checkpoint", STAGE3, "-o", str(tmp_path / "alpha.png"), "--device", "cpu"]) == 0
    assert (tmp_path / "alpha.png").is_file() and (torch_home / released_from).is_file()
