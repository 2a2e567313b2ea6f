"""A real HTTP server on localhost for the download tests: serves a folder, counts requests, fails on demand.

URLs are `<base>/<mode>/<file name>`; the mode says how the file is served:
  files      the whole file
  gate       the whole file, once `release` is set (holds a download open while a test looks)
  short      the whole file's Content-Length, half its bytes, then the connection closes
  stall      nothing at all until `release` is set
  stallbody  the headers and half the body, then nothing until `release` is set
  500        an HTTP 500 error
A missing file is a 404. Tests start one per test (`with FileServer(folder) as server:`), so they never
depend on anything outside the machine.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

RELEASE_WAIT = 20.0  # a stalled answer gives up after this many seconds even if no test releases it


class FileServer:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: list[str] = []
        self.release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # a client that gave up is the point of a test
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, name: str, mode: str = "files") -> str:
        return f"{self.base}/{mode}/{name}"

    def hits(self, name: str) -> int:
        """How many GET requests named this file (in any mode)."""
        return sum(path.endswith(f"/{name}") for path in self.requests)

    def add(self, path: Path, name: str | None = None) -> str:
        """Serve a copy of `path` (as `name`); returns the name."""
        name = name or path.name
        shutil.copyfile(path, self.root / name)
        return name

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # the name http.server calls
            server.requests.append(self.path)
            mode, _, name = self.path.lstrip("/").partition("/")
            path = server.root / name
            if mode == "500":
                self.send_error(500, "Internal Server Error")
                return
            if not name or not path.is_file():
                self.send_error(404, "Not Found")
                return
            if mode in ("stall", "gate"):
                server.release.wait(RELEASE_WAIT)
            data = path.read_bytes()
            body = data[: len(data) // 2] if mode in ("short", "stallbody") else data
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            if mode == "stallbody":
                server.release.wait(RELEASE_WAIT)
            self.close_connection = True

    return Handler


def save_hashed(obj: object, folder: Path, stem: str) -> Path:
    """torch.save `obj` as `<folder>/<stem>-<first 8 hex digits of its sha256>.pth` (torch.hub's naming)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{stem}.tmp"
    torch.save(obj, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return tmp.rename(folder / f"{stem}-{digest[:8]}.pth")
