"""Checkpoints by URL or by name: turn what the user wrote into a local file, downloading it once.

A checkpoint *spec* is a local path, an http/https/file URL, or a released model's config name
(`dimatting.released`). URLs are fetched into torch.hub's cache (`$TORCH_HOME/hub/checkpoints`, where
mmagic/mmengine and torchvision put the same files, so a file already downloaded by them is reused) and
read from there on later runs, with no request. As in torch.hub, a `-<hex>` suffix before the extension
is a sha256 prefix of the file: a mismatch is an error.

The transfer is our own short loop rather than `torch.hub.download_url_to_file`, for two reasons that
matter to a user on a bad connection: that helper opens the URL with no timeout (a stalled server hangs the
run forever), and it takes a body shorter than its Content-Length as complete (Python's http.client ends
the read quietly), which would leave a truncated checkpoint in the cache. Like it, we show a tqdm progress
bar and write to a temporary file renamed into place only when the whole, verified file is there.

Only one process per machine downloads a given file: a file lock beside it makes the others (the ranks
of a torchrun job, or two commands started at once) wait and then read the finished file.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import http.client
import logging
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import torch.hub
from filelock import FileLock
from filelock import Timeout as LockTimeout
from tqdm import tqdm

from dimatting import __version__, released
from dimatting.errors import CheckpointError
from dimatting.io import atomic_path

logger = logging.getLogger("dimatting")

SCHEMES = ("http", "https", "file")
TIMEOUT = 30.0  # seconds without a byte (connecting or reading) before a download gives up
CHUNK = 1 << 20
# torch.hub's naming convention, anchored at the end of the name: `vgg16-397923af.pth`. (torch.hub's own
# regex takes the first `-<hex>.` anywhere, which in mmagic's `..._SAD-50.6_...-647f24b6.pth` is `-50.`.)
HASH_SUFFIX = re.compile(r"-([0-9a-f]{8,64})\.[^.]+$")


class DownloadError(CheckpointError):
    """A checkpoint URL could not be fetched (or fetched the wrong bytes); nothing was cached."""


def cache_dir() -> Path:
    """torch.hub's checkpoint cache: `$TORCH_HOME/hub/checkpoints` (default `~/.cache/torch/hub/checkpoints`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def is_url(spec: object) -> bool:
    """True for text of the form `scheme://...` (any scheme: unsupported ones are refused when fetched)."""
    return isinstance(spec, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", spec) is not None


def cached_file(url: str) -> Path:
    """Where `url` is (or will be) cached: the cache dir plus the URL's file name, as torch.hub does."""
    name = Path(unquote(urlparse(url).path)).name
    if not name:
        raise DownloadError(f"{url}: the URL names no file; give the URL of the checkpoint file itself")
    return cache_dir() / name


def expected_sha256_prefix(filename: str) -> str | None:
    """The sha256 prefix a file name promises (`name-<8+ hex digits>.ext`), or None."""
    match = HASH_SUFFIX.search(filename)
    return match.group(1) if match else None


def resolve_checkpoint(spec: str | os.PathLike, timeout: float = TIMEOUT) -> Path:
    """A checkpoint spec -> a local path: URLs and released names are downloaded (once) into the cache.

    Anything else is returned as a path, existing or not, so that each caller keeps its own "not found"
    message; a missing name that is close to a released model's name is an error that suggests it.
    """
    if isinstance(spec, os.PathLike):
        return Path(spec)
    text = str(spec)
    if is_url(text):
        return download(text, timeout=timeout)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if text in released.RELEASED:
        return download(released.RELEASED[text].url, timeout=timeout)
    if os.sep not in text and not path.suffix:
        close = difflib.get_close_matches(text, list(released.RELEASED), n=1, cutoff=0.8)
        if close:
            raise CheckpointError(
                f"{text}: no such file and no released model of that name; did you mean '{close[0]}'? "
                "(dim models lists them)"
            )
    return path


def download(url: str, timeout: float = TIMEOUT, hint: str = "or pass a local file instead of the URL") -> Path:
    """Fetch `url` into the cache unless it is there already; returns the cached file.

    Failures raise one `DownloadError` line: the URL, the reason, where to put the file by hand and `hint`.
    """
    scheme = urlparse(url).scheme.lower()
    if scheme not in SCHEMES:
        raise DownloadError(f"{url}: unsupported URL scheme '{scheme}'; use an http, https or file URL, {hint}")
    dst = cached_file(url)
    if dst.is_file():
        return dst
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with _download_lock(dst):
            if dst.is_file():  # another process fetched it while this one waited
                return dst
            logger.info("Downloading %s to %s", url, dst)
            _transfer(url, dst, timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(
            f"{url}: download failed: {_reason(exc, timeout)}; download it by hand to {dst}, {hint}"
        ) from exc
    except _WrongBytes as exc:
        raise DownloadError(f"{url}: {exc}; nothing was cached; check the URL or put the right file at {dst}") from exc
    return dst


class _WrongBytes(Exception):
    """The server answered, but with a body that is not the promised file."""


class _CutShort(OSError):
    """The connection closed before Content-Length bytes arrived (http.client does not say so itself)."""


@contextlib.contextmanager
def _download_lock(dst: Path) -> Iterator[None]:
    """An exclusive file lock beside `dst`, held while one process downloads it; says so when it waits."""
    lock = FileLock(dst.parent / f".{dst.name}.lock")
    try:
        lock.acquire(timeout=0)
    except LockTimeout:
        logger.info("%s: another process is downloading it; waiting for it", dst)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _transfer(url: str, dst: Path, timeout: float) -> None:
    """GET `url` into a temporary file beside `dst`; rename it only when complete and its hash matches."""
    request = urllib.request.Request(url, headers={"User-Agent": f"dimatting/{__version__}"})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=timeout) as response, atomic_path(dst) as tmp:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=dst.name, disable=None) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            received = out.tell()
        if total is not None and received < total:
            raise _CutShort(f"body cut short: the connection closed after {received} of {total} bytes")
        prefix = expected_sha256_prefix(dst.name)
        if prefix is not None and not digest.hexdigest().startswith(prefix):
            raise _WrongBytes(
                f"the downloaded file's sha256 is {digest.hexdigest()[:16]}..., but its name promises one "
                f"starting with {prefix} (the -<hex> suffix is a sha256 prefix, as in torch.hub)"
            )


def _reason(exc: BaseException, timeout: float) -> str:
    """A short, one-line reason for a failed download."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc  # an exception, or a text
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host ({cause.strerror}); offline or DNS failure"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, TimeoutError):
        return f"no data for {timeout:g} s (timed out)"
    if isinstance(cause, _CutShort):
        return str(cause)
    if isinstance(cause, http.client.IncompleteRead):
        return "body cut short: the connection closed before the end of the file"
    if isinstance(cause, FileNotFoundError):
        return "no such file"
    if isinstance(cause, OSError) and cause.strerror:
        return f"{cause.strerror} ({cause.filename})" if cause.filename else cause.strerror
    return " ".join(str(cause).split()) or type(cause).__name__
