"""Tiled prediction for images too large to run whole: overlapping tiles blended with raised-cosine weights.

Peak memory of DIM grows with the pixel count (a 1024x1024 stage-3 pass already peaks near 1.8 GB on the
CPU), so large images are cut into tiles of at most `tile` pixels a side that overlap by at least `overlap`
pixels. In an overlap the left/top tile fades out as cos^2 while the next fades in as sin^2, so the weights
sum to one and no seam appears; image borders are not faded. Tiles without unknown trimap pixels are not
run at all: their alpha is known from the trimap.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Window = tuple[int, int, int, int]  # y0, y1, x0, x1

DEFAULT_TILE_SIZE = 768
DEFAULT_TILE_OVERLAP = 128
# Images with more pixels than this are tiled: a whole 1024x1024 stage-3 pass peaks near 1.8 GB on the CPU.
DEFAULT_TILE_THRESHOLD = 1024 * 1024


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length) with neighbours overlapping >= `overlap`."""
    if tile <= overlap:
        raise ValueError(f"tile size {tile} must be larger than the overlap {overlap}")
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[Window]:
    """All tile windows of an image, row by row."""
    ys = tile_starts(height, tile, overlap)
    xs = tile_starts(width, tile, overlap)
    return [(y, min(y + tile, height), x, min(x + tile, width)) for y in ys for x in xs]


def _ramp_weights(starts: list[int], tile: int, length: int, index: int) -> np.ndarray:
    """1-D weights of tile `index`: sin^2 up over the overlap with the previous tile, cos^2 down over the next."""
    start, end = starts[index], min(starts[index] + tile, length)
    weights = np.ones(end - start, dtype=np.float64)
    if index > 0:
        fade = min(starts[index - 1] + tile, length) - start
        weights[:fade] = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade) ** 2
    if index + 1 < len(starts):
        fade = end - starts[index + 1]
        weights[len(weights) - fade :] = np.cos(0.5 * np.pi * (np.arange(fade) + 0.5) / fade) ** 2
    return weights


def predict_tiled(
    run: Callable[[np.ndarray, np.ndarray], np.ndarray],
    image: np.ndarray,
    trimap: np.ndarray,
    tile: int,
    overlap: int,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Blend `run(image_tile, trimap_tile) -> float HxW` over overlapping tiles into one HxW float32 map.

    Pixels that only skipped tiles (no unknown pixels) cover get trimap/255. `progress(n)` is called after
    each tile (run or skipped) with the number of tiles handled so far.
    """
    height, width = trimap.shape
    ys = tile_starts(height, tile, overlap)
    xs = tile_starts(width, tile, overlap)
    acc = np.zeros((height, width), dtype=np.float32)
    weight_sum = np.zeros((height, width), dtype=np.float32)
    done = 0
    for iy, y0 in enumerate(ys):
        wy = _ramp_weights(ys, tile, height, iy)
        for ix, x0 in enumerate(xs):
            y1, x1 = y0 + len(wy), min(x0 + tile, width)
            tri = trimap[y0:y1, x0:x1]
            if (tri == 128).any():
                weights = np.outer(wy, _ramp_weights(xs, tile, width, ix)).astype(np.float32)
                acc[y0:y1, x0:x1] += run(image[y0:y1, x0:x1], tri) * weights
                weight_sum[y0:y1, x0:x1] += weights
            done += 1
            if progress is not None:
                progress(done)
    covered = weight_sum > 0
    out = trimap.astype(np.float32) / np.float32(255.0)
    np.divide(acc, weight_sum, out=out, where=covered)
    return out
