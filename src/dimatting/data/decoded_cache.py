"""Decode-once cache for training images: each decoded image kept as a raw `.npy` file, memory-mapped on reuse.

Why: at Composition-1k's 1-2 MP, decoding the four PNGs of a training sample costs ~100 ms of CPU, ten times
everything else the pipeline does with it (crop, flip, resize, trimap, pack), while a GPU step takes 10-60 ms.
Training reads every file many times (1M iterations over 43100 samples is 23 epochs, and each foreground and
alpha serves 100 samples), so decoding once and afterwards reading raw pixels from the page cache or the disk
moves the bottleneck back to the GPU. A memory map reads only the pages a crop touches.

An entry is keyed by the file's resolved path, size, modification time, inode and the decode flag, so an
edited or replaced file is decoded again. Entries are written to a temporary file and renamed into place:
data-loader workers and ranks sharing the cache never see half an entry, and an unreadable entry is decoded
again and rewritten. The cache stops growing at `max_bytes`, or when writing would leave the disk with less
than `min_free_bytes`; it never deletes entries (remove the folder to clear it). A failed write (read-only
folder, disk full) turns writing off for the process with one warning: training goes on, decoding as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger("dimatting.data")

ENTRY_SUFFIX = ".npy"
DEFAULT_MAX_GIB = 100.0  # --decode-cache-gb
# Entries written by other processes are counted again after this many of our own writes: the budget is shared
# by every worker and rank, and a rescan keeps the overshoot to a few entries per process.
RESCAN_EVERY = 64


def default_directory() -> Path:
    """`$DIMATTING_DECODE_CACHE`, else `~/.cache/dimatting/decoded` (beside the pretrained VGG16 weights)."""
    configured = os.environ.get("DIMATTING_DECODE_CACHE")
    if configured:
        return Path(configured).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "dimatting" / "decoded"


def entry_key(path: Path, stat: os.stat_result, flag: int) -> str:
    """Hex digest naming the entry of `path` decoded with the OpenCV imread `flag`, as the file is now."""
    ident = f"{os.path.realpath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}\0{flag}"
    return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:40]


@dataclass
class DecodedCache:
    """Decoded images under `directory`, at most `max_bytes` of them, leaving `min_free_bytes` on the disk."""

    directory: Path
    max_bytes: int
    min_free_bytes: int
    writable: bool = True
    _used: int | None = field(default=None, repr=False)  # bytes in the folder, counted lazily per process
    _writes: int = field(default=0, repr=False)

    def _entry(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}{ENTRY_SUFFIX}"

    def get(self, path: Path, stat: os.stat_result, flag: int) -> np.ndarray | None:
        """The cached decode of `path` (a read-only array backed by the entry's memory map), or None."""
        entry = self._entry(entry_key(path, stat, flag))
        try:
            return np.load(entry, mmap_mode="r", allow_pickle=False).view(np.ndarray)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):  # truncated or foreign file: decode again and replace it
            entry.unlink(missing_ok=True)
            return None

    def put(self, path: Path, stat: os.stat_result, flag: int, image: np.ndarray) -> None:
        """Store `image`, the decode of `path` as it was at `stat`, if the budget and the disk allow."""
        if not self.writable or not self._room_for(image.nbytes):
            return
        entry = self._entry(entry_key(path, stat, flag))
        tmp = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=entry.parent, suffix=".tmp", delete=False) as handle:
                tmp = Path(handle.name)
                np.save(handle, np.ascontiguousarray(image), allow_pickle=False)
            os.replace(tmp, entry)
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            self.writable = False
            logger.warning("decoded-image cache %s: cannot write (%s); decoding every time from now on in this "
                           "process; free space or pass --decode-cache off", self.directory, exc.strerror or exc)
            return
        self._used = (self._used or 0) + image.nbytes
        self._writes += 1

    def _room_for(self, nbytes: int) -> bool:
        if self._used is None or self._writes % RESCAN_EVERY == RESCAN_EVERY - 1:
            self._used = self.used_bytes()
        if self._used + nbytes > self.max_bytes:
            return False
        where = self.directory if self.directory.is_dir() else _existing_parent(self.directory)  # the disk it is on
        try:
            free = shutil.disk_usage(where).free
        except OSError:
            return False
        return free - nbytes >= self.min_free_bytes

    def used_bytes(self) -> int:
        """Bytes held by the entries now (every process's)."""
        total = 0
        if not self.directory.is_dir():
            return 0
        for sub in os.scandir(self.directory):
            if not sub.is_dir():
                continue
            for item in os.scandir(sub.path):
                if item.name.endswith(ENTRY_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):  # replaced by another process meanwhile
                        total += item.stat().st_size
        return total

    def describe(self) -> str:
        """One line for the training log: where, how full, how large it may grow."""
        used = self.used_bytes()
        return (f"decoded-image cache: {self.directory} ({used / 2**30:.1f} GiB used, grows to at most "
                f"{self.max_bytes / 2**30:.0f} GiB keeping {self.min_free_bytes / 2**30:.0f} GiB of the disk free); "
                "turn it off with --decode-cache off")


def _existing_parent(path: Path) -> Path:
    """The nearest existing folder above `path` (whose disk the cache will be on)."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(path.anchor or ".")


def cache_for_training(choice: str, max_gib: float, on_gpu: bool) -> DecodedCache | None:
    """The cache `--decode-cache CHOICE` asks for: `auto` (on where a GPU trains: there decoding is the
    bottleneck; on a CPU the step is, and the cache would only cost disk), `off`, or a folder (on, there)."""
    if choice == "off" or (choice == "auto" and not on_gpu):
        return None
    directory = default_directory() if choice == "auto" else Path(choice).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        disk = shutil.disk_usage(directory)
    except OSError as exc:
        logger.warning("decoded-image cache %s: cannot use it (%s); decoding every time. Pass --decode-cache DIR "
                       "with a writable folder, or --decode-cache off", directory, exc.strerror or exc)
        return None
    return DecodedCache(directory, max_bytes=int(max_gib * 2**30), min_free_bytes=min(10 * 2**30, disk.total // 10))
