"""The compiled kernels behind dimatting.metrics: GRAD's restricted separable filter and CONN's one-pass
union-find, with the reasons behind each algorithm.

The loops are C (`dimatting/_metrics_c.c`), compiled when the package is installed, so a process loads them in
about a millisecond: a JIT (numba) spent 0.5-0.6 s per process loading its cached machine code, in `dim evaluate`
and again in each of its worker processes. This module allocates the outputs, checks nothing the callers in
dimatting.metrics have not checked, and holds the per-thread work rows of CONN.
"""

from __future__ import annotations

import threading

import numpy as np

from dimatting.errors import DimattingError

try:
    from dimatting import _metrics_c as _c
except ImportError as exc:  # a source checkout used through PYTHONPATH without a build
    raise DimattingError(
        f"the compiled metric kernels (dimatting._metrics_c) are missing ({exc}); reinstall with "
        "`pip install -e .` or, in a source checkout, run `python setup.py build_ext --inplace`"
    ) from None


def scan_trimap(pred: np.ndarray, trimap: np.ndarray, full: float) -> tuple[int, int, np.ndarray]:
    """One look at the trimap: pixels outside {0, 128, 255}, known pixels where pred is not 0 / `full` as the
    trimap says, and the flat indices (int64) of the unknown (128) pixels in row-major order.

    pred: uint8 or float64 HxW, trimap: uint8 HxW, both C-contiguous.
    """
    stray, bad, index_bytes = _c.scan_trimap(pred, trimap, float(full))
    return stray, bad, np.frombuffer(index_bytes, np.int64)


def grad_terms(pred: np.ndarray, gt: np.ndarray, unknown_idx: np.ndarray, factor_p: float, factor_g: float,
               smooth: np.ndarray, deriv: np.ndarray, single: bool) -> np.ndarray:
    """(|∇g'| − |∇p'|)² at every unknown pixel, in row-major order (x' = factor·x + shift, the min-max map).

    The 9x9 kernel is rank one, so each map is filtered by a vertical pass (9 taps over rows y-4..y+4, the
    replicate border at the image edges) then a horizontal pass (9 taps along the row), only where unknown
    pixels read it: per row, over stretches of its runs of unknown pixels (runs closer than 8 columns share
    one stretch: a few unneeded values cost less than another sweep). The factors are symmetric (smooth) and
    antisymmetric (deriv) about the centre, so pairing taps halves the multiplications; for uint8 maps the
    pair sums are exact integers. Working row by row keeps what a row needs in L1: nine source rows and four
    rows of float64 partial sums. The shift of the normalisation drops out of a derivative, so raw values are
    filtered and the magnitude is scaled by `factor`. `single`: MATLAB's (single(a) − single(b))².

    pred: uint8 or float64 HxW; gt: uint8 HxW; unknown_idx: sorted int64 flat indices.
    """
    out = np.empty(unknown_idx.size, np.float64)
    _c.grad_terms(pred, gt, np.ascontiguousarray(unknown_idx, np.int64), float(factor_p), float(factor_g),
                  np.ascontiguousarray(smooth, np.float64), np.ascontiguousarray(deriv, np.float64), bool(single),
                  out)
    return out


def conn_levels(pred: np.ndarray, gt: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """CONN's level of uint8 maps: how many of the ten cuts min(p, g) reaches (cuts[k]: the least uint8 alpha
    that passes threshold k+1). Ten compares per pixel vectorise; a table look-up (cv2.LUT) goes pixel by
    pixel, ~7x slower at 2000x2000."""
    out = np.empty(pred.shape, np.uint8)
    _c.conn_levels(pred, gt, np.ascontiguousarray(cuts, np.uint8), out)
    return out


_work = threading.local()
_ROWS = 12  # int32 work rows of conn_depth, one pixel count long each


def conn_depth(level: np.ndarray, unknown_idx: np.ndarray, column_major: bool) -> np.ndarray:
    """For each unknown pixel, for how many leading thresholds it stayed in every Ω_i (l = t[depth]), uint8.

    Ω_i is the largest 4-connected component of M_i = {level ≥ i}. One sweep over the level bytes finds the
    runs of level-10 pixels (in every M_i; most of a typical foreground) row by row, joining each run to the
    runs it touches in the row above (a union-find over runs: the components of M_10 for the price of reading
    the bytes once), and lists the pixels of levels 1..9 in raster order. The union-find proper starts from
    one node per M_10 component; pixels are switched on from level 9 down to 1 (raster order within a level)
    and joined to their switched-on neighbours, so after level i the components are exactly those of M_i.
    Its nodes are numbered compactly (runs, then listed pixels), so its arrays stay in cache; a pixel's
    level-10 neighbour is found by binary search among its row's runs. The sweep skips eight bytes at a time
    where all are 0 or 10 (most of an image). The largest component, ties going to the component whose first
    pixel comes first in the protocol's scan order (row-major: OpenCV's label order, column-major: MATLAB's),
    can only be replaced by a component that just grew, so it is tracked as pixels arrive. A second,
    uncompressed forest records every merge and its level (union by size: O(log n) deep); the component of p
    at level i is its highest ancestor joined at a level ≥ i, compared with Ω_i.

    The int32 work rows are kept per thread and reused: fresh pages cost more than the whole computation on a
    2000x2000 image, and only the part a call uses is ever touched.
    """
    h, w = level.shape
    work = getattr(_work, "conn", None)
    if work is None or work.shape[1] < h * w:
        work = np.empty((_ROWS, h * w), np.int32)
        _work.conn = work
    out = np.empty(unknown_idx.size, np.uint8)
    _c.conn_depth(np.ascontiguousarray(level, np.uint8), np.ascontiguousarray(unknown_idx, np.int64),
                  bool(column_major), work, out)
    return out


def conn_terms(pred: np.ndarray, gt: np.ndarray, unknown_idx: np.ndarray, depth: np.ndarray,
               phi: np.ndarray) -> np.ndarray:
    """|φ(g) − φ(p)| at every unknown pixel of uint8 maps, φ read from the (depth, alpha) table `phi`
    (11x256); the difference is taken in the table's precision (float32 for MATLAB's single), then widened."""
    out = np.empty(unknown_idx.size, np.float64)
    _c.conn_terms(pred, gt, np.ascontiguousarray(unknown_idx, np.int64), depth, np.ascontiguousarray(phi), out)
    return out
