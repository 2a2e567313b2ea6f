"""What `dim serve` computes for a request: plain functions, run in a worker thread, no HTTP here.

Inputs are read by `dimatting.trimap.read_image_and_trimap` and the alpha comes from `Matter.predict`,
`alpha_to_uint8` and `cutout_rgba`, the functions `dim predict` uses, so the same inputs give the same
pixels and the same error messages. Notices the CLI would print (a remapped trimap level, an ignored RGBA
alpha channel, a trimap without unknown pixels) are collected so the page can show them too.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from dimatting.io import Upload, encode_image, read_image
from dimatting.serve.device import Progress
from dimatting.trimap import read_image_and_trimap

if TYPE_CHECKING:
    from dimatting.inference import Matter

OUTPUTS = ("alpha", "cutout")


class _ThreadNotices(logging.Handler):
    """Keeps the messages that dimatting logs from one thread."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def notices() -> Iterator[list[str]]:
    """Collect the notices dimatting logs in this thread while the block runs (the CLI shows them too)."""
    handler = _ThreadNotices()
    logger = logging.getLogger("dimatting")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def image_png(image: Upload) -> tuple[bytes, list[str]]:
    """The photo as the model sees it (RGB, 8 bits: 16-bit scaled, alpha dropped, gray replicated), as a
    PNG the browser shows without colour management or EXIF rotation getting in the way."""
    with notices() as messages:
        return encode_image(read_image(image)), messages


def read_inputs(
    image: Upload, trimap: Upload | None, mask: Upload | None, band: int, tolerant: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """RGB image and checked trimap, as `dim predict --trimap/--mask --band --trimap-tolerant` reads them."""
    with notices() as messages:
        rgb, levels = read_image_and_trimap(image, trimap, mask, band=band, tolerant=tolerant)
    return rgb, levels, messages


def predict_png(
    matter: Matter, image: np.ndarray, trimap: np.ndarray, output: str, progress: Progress, source: object
) -> tuple[bytes, list[str]]:
    """The alpha (gray PNG) or cutout (RGBA PNG) of a checked pair; `progress` follows the tiles."""
    from dimatting.inference import alpha_to_uint8, cutout_rgba

    with notices() as messages:
        height, width = trimap.shape
        tiled = matter.uses_tiles(height, width)
        progress.total = matter.count_tiles(height, width) if tiled else 0
        progress.stage = "predicting"

        def tiles_done(done: int) -> None:
            progress.done = done

        alpha = matter.predict(image, trimap, tiled=tiled, progress=tiles_done, source=source)
        if output == "cutout":
            progress.stage = "cutout"
            png = encode_image(cutout_rgba(image, alpha))
        else:
            png = encode_image(alpha_to_uint8(alpha))
        progress.stage = "done"
    return png, messages


def trimap_png(
    image: Upload, trimap: Upload | None, mask: Upload | None, band: int, tolerant: bool
) -> tuple[bytes, list[str]]:
    """The trimap a prediction of these inputs would use, as a gray PNG (values 0, 128, 255 only)."""
    _, levels, messages = read_inputs(image, trimap, mask, band, tolerant)
    return encode_image(levels), messages
