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
than `min_free_bytes`. The size budget is held as a floor on the disk's free space, fixed when the cache is
opened (free space then, less what the budget still allows), which every process checks with one cheap query
per write; other files written to the same disk meanwhile count against it too, so it errs on the safe side.
It never deletes entries (remove the folder to clear it), only the half-written files of killed processes, an
hour later. A failed write (read-only folder, disk full) turns writing off for the process with one warning:
training goes on, decoding as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger("dimatting.data")

ENTRY_SUFFIX = ".npy"
TEMPORARY_SUFFIX = ".tmp"
STALE_TEMPORARY_S = 3600
DEFAULT_MAX_GIB = 100.0  # --decode-cache-gb


def default_directory() -> Path:
    """`$DIMATTING_DECODE_CACHE`, else `~/.cache/dimatting/decoded` (beside the pretrained VGG16 weights)."""
    configured = os.environ.get("DIMATTING_DECODE_CACHE")
    if configured:
        return Path(configured).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "dimatting" / "decoded"


def file_version(stat: os.stat_result) -> tuple[int, int, int]:
    """What tells one version of a file from another: size, modification time, inode (a replaced file)."""
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def entry_key(path: Path, stat: os.stat_result, flag: int) -> str:
    """Hex digest naming the entry of `path` decoded with the OpenCV imread `flag`, as the file is now."""
    ident = "\0".join(map(str, (os.path.realpath(path), *file_version(stat), flag)))
    return hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()[:40]


@dataclass
class DecodedCache:
    """Decoded images under `directory`, written while the disk keeps more than `free_floor_bytes` free.

    Made by `open`, which turns the size budget into that floor: one free-space query per write then holds the
    budget for every data worker and rank together, without any of them counting the others' entries.
    """

    directory: Path
    free_floor_bytes: int
    used_at_open: int = 0  # for the log line
    max_bytes: int = 0
    writable: bool = True

    @classmethod
    def open(cls, directory: Path, max_bytes: int, min_free_bytes: int) -> DecodedCache:
        """The cache in `directory` (made if missing), to grow to `max_bytes` in all while leaving
        `min_free_bytes` of the disk free. Raises OSError if the folder cannot be made or examined."""
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(directory)
        used = used_bytes(directory)
        free = shutil.disk_usage(directory).free
        return cls(directory, max(min_free_bytes, free - max(0, max_bytes - used)), used, max_bytes)

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
        """Store `image`, the decode of `path` as it was at `stat`, if the disk keeps its floor afterwards."""
        if not self.writable or not self._room_for(image.nbytes):
            return
        entry = self._entry(entry_key(path, stat, flag))
        tmp = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=entry.parent, suffix=TEMPORARY_SUFFIX, delete=False) as handle:
                tmp = Path(handle.name)
                np.save(handle, np.ascontiguousarray(image), allow_pickle=False)
            os.replace(tmp, entry)
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            self.writable = False
            logger.warning("decoded-image cache %s: cannot write (%s); decoding every time from now on in this "
                           "process; free space or pass --decode-cache off", self.directory, exc.strerror or exc)

    def _room_for(self, nbytes: int) -> bool:
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            return False
        return free - nbytes >= self.free_floor_bytes

    def describe(self) -> str:
        """One line for the training log: where, how full, how much more it may take."""
        try:
            room = max(0, shutil.disk_usage(self.directory).free - self.free_floor_bytes)
        except OSError:
            room = 0
        return (f"decoded-image cache: {self.directory} ({self.used_at_open / 2**30:.1f} GiB used; may take "
                f"{room / 2**30:.1f} GiB more, up to {self.max_bytes / 2**30:.0f} GiB in all, keeping "
                f"{self.free_floor_bytes / 2**30:.1f} GiB of the disk free); turn it off with --decode-cache off")


def used_bytes(directory: Path) -> int:
    """Bytes held by the entries in `directory` now."""
    total = 0
    for sub in os.scandir(directory):
        if not sub.is_dir():
            continue
        for item in os.scandir(sub.path):
            if item.name.endswith(ENTRY_SUFFIX):
                with contextlib.suppress(FileNotFoundError):  # replaced by another process meanwhile
                    total += item.stat().st_size
    return total


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the half-written entries of processes killed while writing (an hour old: no live writer takes
    that long), which nothing else would ever remove."""
    cutoff = time.time() - STALE_TEMPORARY_S
    for temporary in directory.glob(f"*/*{TEMPORARY_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            if temporary.stat().st_mtime < cutoff:
                temporary.unlink()


def _existing_parent(path: Path) -> Path:
    """The nearest existing folder above `path` (whose disk the cache will be on)."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(path.anchor or ".")


def cache_for_training(choice: str, max_gib: float, on_gpu: bool) -> DecodedCache | None:
    """The cache `--decode-cache CHOICE` asks for: `auto` (on where a GPU trains: there decoding is the
    bottleneck; on a CPU the step is, and the cache would only cost disk), `off`, or a folder (on, there). It
    keeps 10% of the disk (at most 10 GiB) free."""
    if choice == "off" or (choice == "auto" and not on_gpu):
        return None
    directory = default_directory() if choice == "auto" else Path(choice).expanduser()
    try:
        disk = directory if directory.exists() else _existing_parent(directory)
        keep_free = min(10 * 2**30, shutil.disk_usage(disk).total // 10)
        return DecodedCache.open(directory, max_bytes=int(max_gib * 2**30), min_free_bytes=keep_free)
    except OSError as exc:
        logger.warning("decoded-image cache %s: cannot use it (%s); decoding every time. Pass --decode-cache DIR "
                       "with a writable folder, or --decode-cache off", directory, exc.strerror or exc)
        return None
