"""`dim serve` as a command: the real process serves, writes no file and stops on Ctrl+C; its start-up errors."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from dimatting.cli import main
from tests.serve_helpers import write_sample


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1
    return lines[0]


def test_the_dim_serve_process_serves_writes_no_file_and_stops_on_ctrl_c(serve_checkpoint, tmp_path):
    dim = shutil.which("dim") or pytest.fail("the `dim` script is not installed (pip install -e .)")
    sample = write_sample(tmp_path / "in", 96, 72)
    scratch, cwd = tmp_path / "tmp", tmp_path / "cwd"
    scratch.mkdir()
    cwd.mkdir()
    server = subprocess.Popen(
        [dim, "serve", "--checkpoint", str(serve_checkpoint), "--port", "0", "--device", "cpu"],
        cwd=cwd, env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = server.stdout.readline()  # printed once the model is loaded and the socket listens
        found = re.search(r"open (http://127\.0\.0\.1:\d+/) in a browser", banner)
        assert found, banner + server.stderr.read()
        url = found.group(1)
        assert httpx.get(url + "api/health").json()["model"]["stage"] == "2/3"
        files = {"image": ("photo.png", sample["image"].read_bytes()),
                 "trimap": ("trimap.png", sample["trimap"].read_bytes())}
        for output in ("alpha", "cutout"):
            response = httpx.post(url + "api/predict", params={"output": output}, files=files, timeout=120)
            assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
        bad = httpx.post(url + "api/predict", files={**files, "image": ("x.txt", b"text")})
        assert bad.status_code == 400 and bad.json()["error"].startswith("x.txt: cannot decode the image")
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert out.strip().endswith("dim serve: stopped") and "Traceback" not in err
    assert list(scratch.iterdir()) == [] and list(cwd.iterdir()) == []


def test_without_the_serve_extra_the_error_says_what_to_install(serve_checkpoint, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if uvicorn were not installed
    monkeypatch.delitem(sys.modules, "dimatting.serve.server", raising=False)
    assert main(["serve", "--checkpoint", str(serve_checkpoint)]) == 2
    assert error_line(capsys) == ('error: dim serve needs the web server packages (uvicorn is missing): '
                                  'pip install "dimatting[serve]"')


def test_a_taken_port_a_missing_checkpoint_and_bad_options_are_one_line_errors(serve_checkpoint, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", str(serve_checkpoint), "--port", str(port)]) == 2
        assert error_line(capsys) == (f"error: --host 127.0.0.1 --port {port}: cannot listen there (Address already "
                                      "in use); pick another --port (0 picks a free one)")
    missing = tmp_path / "missing.pth"
    assert main(["serve", "--checkpoint", str(missing), "--port", "0"]) == 2
    assert str(missing) in error_line(capsys)
    assert main(["serve", "--checkpoint", str(serve_checkpoint), "--port", "0", "--device", "cpu",
                 "--precision", "tf32"]) == 2
    assert error_line(capsys).startswith("error: --precision tf32: TF32 is a CUDA tensor-core format")
    assert main(["serve", "--checkpoint", str(serve_checkpoint), "--queue-size", "-1"]) == 2
    assert error_line(capsys) == "error: --queue-size -1: give 0 or more"
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--checkpoint", str(serve_checkpoint), "--max-pixels", "0"])
    assert exited.value.code == 2
    assert "argument --max-pixels: 0: give a number greater than 0" in capsys.readouterr().err


def test_dim_help_imports_no_web_server():
    code = ("import sys; from dimatting.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'python_multipart', 'dimatting.serve') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"
