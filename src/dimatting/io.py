"""Reading and writing images, trimaps and alphas, with validation and atomic writes.

Users' files come in every shape: RGBA photos, 3-channel trimaps, trimaps whose unknown value is 102
(pymatting's convention), 16-bit PNGs, JPEG alphas. Everything here turns them into the three arrays the
rest of the code assumes (RGB uint8 HxWx3, trimap uint8 HxW in {0,128,255}, alpha uint8 HxW) and says
clearly what it did, or raises an `InputError` naming the file and the fix. Writes go to a temporary file
in the target folder and are renamed into place, so a crash never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dimatting.errors import InputError

logger = logging.getLogger("dimatting")

TRIMAP_LEVELS = (0, 128, 255)


@dataclass(frozen=True)
class Upload:
    """A file received over the network (`dim serve`): its bytes and the client's file name.

    The readers below accept one wherever they accept a path, so an upload is checked by the same code and
    its errors read exactly like the CLI's. The name only labels messages; it is never opened.
    """

    name: str
    data: bytes

    def __str__(self) -> str:
        return self.name


ImageSource = str | os.PathLike | Upload


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the suffix so that writers which pick a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save `array` as .npy atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def encode_image(image: np.ndarray, suffix: str = ".png", name: object = "image") -> bytes:
    """A uint8 image, HxW (gray), HxWx3 (RGB) or HxWx4 (RGBA), as the bytes of a `suffix` file (`name` labels
    errors). The PNGs `dim predict` writes and `dim serve` sends come from here."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"encode_image expects uint8, got {image.dtype} for {name}")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(suffix, image)
    if not ok:
        raise InputError(f"{name}: cannot encode an image with suffix '{suffix}'; use .png")
    return buf.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 image atomically: HxW (gray), HxWx3 (RGB) or HxWx4 (RGBA); format from the suffix."""
    path = Path(path)
    write_bytes(path, encode_image(image, path.suffix or ".png", path))


def undecodable(source: ImageSource, what: str) -> InputError:
    """The error for bytes that are not an image we can read: one wording for files and uploads."""
    return InputError(f"{source}: cannot decode the {what} (corrupt or not an image); re-export it as PNG")


def _decode(source: ImageSource, what: str) -> np.ndarray:
    """Decode any image file OpenCV can read, unchanged (depth and channels as stored)."""
    if isinstance(source, Upload):
        path, data = source, np.frombuffer(source.data, dtype=np.uint8)
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{path}: {what} file not found; check the path")
        data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise undecodable(path, what)
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float64) / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"{path}: {what} has unsupported pixel type {image.dtype}; save it as 8-bit PNG")
    return image


def read_image(path: ImageSource) -> np.ndarray:
    """Read a photo as RGB uint8 HxWx3; grayscale is replicated, the alpha channel of RGBA is dropped."""
    image = _decode(path, "image")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        if image[:, :, 3].min() < 255:
            logger.info("%s: RGBA image, its alpha channel is ignored (the trimap says what to matte)", path)
        image = image[:, :, :3]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_gray(path: ImageSource, what: str = "alpha") -> np.ndarray:
    """Read a single-channel uint8 HxW map (alpha, trimap, mask).

    Files stored with 3 or 4 equal colour channels (common for alphas and trimaps) give that channel;
    genuinely coloured files are converted to luminance with a notice.
    """
    image = _decode(path, what)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        colour = image[:, :, :3]
        if (colour[:, :, 0] == colour[:, :, 1]).all() and (colour[:, :, 1] == colour[:, :, 2]).all():
            image = colour[:, :, 0]
        else:
            logger.warning("%s: the %s has colour; converted to grayscale", path, what)
            image = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(image)


def normalize_trimap(trimap: np.ndarray, source: str = "trimap", tolerant: bool = False) -> np.ndarray:
    """Return a trimap with values in {0, 128, 255} following the project's rules.

    - values already in {0, 128, 255}: unchanged;
    - exactly one extra level x besides 0/255 (e.g. pymatting's 102): x becomes 128, with a notice;
    - any other stray values: an `InputError` with their count, unless `tolerant` (nearest level).
    """
    trimap = np.asarray(trimap)
    if trimap.dtype != np.uint8:
        raise InputError(f"{source}: trimap must be uint8, got {trimap.dtype}")
    # OpenCV's histogram is ~6x faster than bincount (float32 counts: exact to 2**24 and never 0 when >= 1);
    # exact counts are only needed for the messages below
    hist = cv2.calcHist([np.ascontiguousarray(trimap)], [0], None, [256], [0, 256]).ravel()
    stray = [int(v) for v in np.flatnonzero(hist) if v not in TRIMAP_LEVELS]
    if not stray:
        return trimap
    counts = np.bincount(trimap.ravel(), minlength=256)
    if len(stray) == 1 and counts[128] == 0:
        logger.warning("%s: trimap unknown value %d mapped to 128", source, stray[0])
        out = trimap.copy()
        out[trimap == stray[0]] = 128
        return out
    n_stray = int(sum(counts[v] for v in stray))
    if not tolerant:
        raise InputError(
            f"{source}: trimap has {n_stray} pixels with values outside {{0,128,255}} "
            f"({len(stray)} distinct, e.g. {stray[:5]}); fix the trimap or pass --trimap-tolerant "
            "to map them to the nearest level"
        )
    logger.warning("%s: %d trimap pixels outside {0,128,255} mapped to the nearest level", source, n_stray)
    lut = np.array([min(TRIMAP_LEVELS, key=lambda lv: abs(lv - v)) for v in range(256)], dtype=np.uint8)
    return lut[trimap]


def read_trimap(path: ImageSource, tolerant: bool = False) -> np.ndarray:
    """Read a trimap as uint8 HxW in {0, 128, 255} (see `normalize_trimap` for the rules)."""
    return normalize_trimap(read_gray(path, "trimap"), source=str(path), tolerant=tolerant)


def files_by_stem(folder: Path, suffixes: tuple[str, ...], what: str) -> tuple[dict[str, Path], list[Path]]:
    """stem -> file for the files of `folder` with one of `suffixes` (any case), first in name order, plus the
    later files whose stem was already taken: the commands treat those differently (evaluate refuses them,
    predict warns and keeps the first)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} folder not found; check the path")
    found: dict[str, Path] = {}
    taken: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            if path.stem in found:
                taken.append(path)
            else:
                found[path.stem] = path
    return found, taken


def check_same_size(a: np.ndarray, b: np.ndarray, path_a: object, path_b: object) -> None:
    """Raise an `InputError` unless two maps have the same height and width."""
    if a.shape[:2] != b.shape[:2]:
        raise InputError(
            f"{path_b}: size {b.shape[1]}x{b.shape[0]} does not match {path_a} "
            f"({a.shape[1]}x{a.shape[0]}, WxH); resize it to match"
        )
