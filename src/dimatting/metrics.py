"""Matting metrics SAD, MSE, GRAD and CONN, equal to mmagic's (default) or to the original DIM MATLAB code.

Two protocols (details and the reason for each difference: docs/metrics.md):
- ``"mmagic"``: mmagic's `SAD`, `MattingMSE`, `GradientError`, `ConnectivityError` with their default arguments
  (float64; SAD and the MSE numerator over the whole image; CONN thresholds from `numpy.arange`, so alpha 153 fails
  0.6000000000000001; ties between equal largest components go to the first in row-major order).
- ``"matlab"``: Ning Xu's DIM evaluation (`compute_*_loss.m`): sums over the unknown region only, single-precision
  per-pixel terms, MATLAB's `0:0.1:1` thresholds, column-major tie-break, the GCA-Matting copy's empty-intersection
  rule.

Why the code is not a line-by-line restatement: the reference formulas touch every pixel several times per metric
(ten labellings and ten float64 passes for CONN, four dense 9x9 filters for GRAD), which costs ~0.1 s per 800x800
image. Here the work follows the unknown region instead, with values equal to the reference's to rounding:
- SAD/MSE of uint8 maps are exact integer sums (OpenCV norms) scaled once.
- GRAD filters only tiles that hold unknown pixels, or the unknown region's bounding box when that is smaller
  (each window carries its 4-pixel filter margin, read from the whole image with replicate borders), with the
  separable form of the rank-1 kernel; the min-max normalisation uses the whole image's extremes, as the
  reference does.
- CONN labels the "core" (pixels in every intersection, alpha >= 1 in both maps) once over the whole image and,
  per threshold, only tiles that hold pixels whose membership changes; a small graph joins tile pieces through
  core components, so components and their areas are exactly the whole-image ones. Exact size ties among the
  largest components fall back to a whole-image labelling to apply the protocol's tie-break.
No torch here: the tester, the CLI and users' scripts share this module.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import scipy.ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dimatting import io
from dimatting.errors import InputError

logger = logging.getLogger("dimatting.metrics")

PROTOCOLS = ("mmagic", "matlab")
METRIC_NAMES = ("SAD", "MSE", "GRAD", "CONN")
UNKNOWN = 128

_GRAD_TILE = 32
_CONN_TILE = 32
_MARGIN = 4  # half size of the 9x9 gradient kernel (sigma 1.4, epsilon 0.01)
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=np.uint8)


def _matlab_colon(start: float, step: float, stop: float) -> np.ndarray:
    """MATLAB's `start:step:stop`: first half counted up from `start`, second half down from `stop`.

    This is why MATLAB's 7th and 8th elements of 0:0.1:1 are exactly 0.6 and 0.7 while numpy's arange gives
    0.6000000000000001 and 0.7000000000000001 (facts §11.6): the list decides whether alpha 153 passes 0.6.
    """
    n = round((stop - start) / step)
    values = [start + k * step if 2 * k < n else stop - (n - k) * step for k in range(n + 1)]
    if n % 2 == 0:
        values[n // 2] = (start + stop) / 2
    return np.array(values, dtype=np.float64)


THRESHOLDS = {
    "mmagic": np.arange(0, 1 + 0.1, 0.1),  # exactly the reference's call, float artefacts included
    "matlab": _matlab_colon(0.0, 0.1, 1.0),
}


def _gauss_kernels(sigma: float = 1.4, epsilon: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """1-D factors of the unit-norm 9x9 derivative-of-Gaussian kernel K[i, j] = g(i)·g'(j) / ||g·g'||.

    K has rank one, so correlating with it equals a row pass with g'/||g'|| then a column pass with g/||g||
    (||K|| = ||g||·||g'||): 18 multiplications per pixel instead of 81, same values to rounding.
    """
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    dg = -x * g / sigma**2
    return g / np.sqrt((g**2).sum()), dg / np.sqrt((dg**2).sum())


_SMOOTH, _DERIV = _gauss_kernels()
assert len(_SMOOTH) == 2 * _MARGIN + 1


# ----------------------------------------------------------------------------------------------- inputs
def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown metric protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")


def _prepare(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, protocol: str, name: str | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the three maps; return (pred uint8 or float64 in [0,1], gt uint8, trimap uint8).

    Under "mmagic" an unmasked prediction is masked by the trimap with a warning (mmagic raises instead; the
    numbers equal those of the masked prediction). "matlab" uses the prediction as given, like the MATLAB code.
    """
    label = name or "prediction"
    maps = []
    for what, arr in (("prediction", pred), ("GT alpha", gt), ("trimap", trimap)):
        arr = np.asarray(arr)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim != 2:
            raise InputError(f"{label}: the {what} must be a single-channel HxW map, got shape {arr.shape}")
        maps.append(np.ascontiguousarray(arr))
    pred, gt, trimap = maps
    if not (pred.shape == gt.shape == trimap.shape):
        raise InputError(f"{label}: sizes differ (prediction {pred.shape}, GT alpha {gt.shape}, trimap "
                         f"{trimap.shape}, HxW); give maps of one size")
    if gt.dtype != np.uint8 or trimap.dtype != np.uint8:
        raise InputError(f"{label}: GT alpha and trimap must be uint8, got {gt.dtype} and {trimap.dtype}")
    stray = cv2.countNonZero(cv2.LUT(trimap, _STRAY_LUT))
    if stray:
        raise InputError(f"{label}: trimap has {stray} pixels outside {{0,128,255}}; normalise it "
                         "(dimatting.io.read_trimap does)")
    known_bg, known_fg = cv2.compare(trimap, 0, cv2.CMP_EQ), cv2.compare(trimap, 255, cv2.CMP_EQ)
    if pred.dtype == np.uint8:
        full = 255
        bad = (cv2.countNonZero(cv2.bitwise_and(pred, known_bg))
               + cv2.countNonZero(cv2.bitwise_and(cv2.bitwise_not(pred), known_fg)))
    else:
        if pred.dtype.kind != "f":
            raise InputError(f"{label}: prediction must be uint8 (0..255) or float in [0, 1], got {pred.dtype}")
        full = 1.0
        pred = pred.astype(np.float64)
        if np.isnan(pred).any():
            raise InputError(f"{label}: prediction contains NaN; fix the model output")
        if pred.size and (pred.min() < 0 or pred.max() > 1):
            raise InputError(f"{label}: float prediction outside [0, 1] (min {pred.min():.4g}, max "
                             f"{pred.max():.4g}); clip it or save it as uint8 PNG")
        bad = int(np.count_nonzero(pred[known_bg > 0]) + np.count_nonzero(pred[known_fg > 0] != 1))
    if protocol == "mmagic" and bad:
        logger.warning("%s: prediction is not masked by the trimap (%d known pixels differ); masked before "
                       "evaluation (mmagic would refuse it)", label, bad)
        pred = pred.copy()
        pred[known_bg > 0] = 0
        pred[known_fg > 0] = full
    return pred, gt, trimap


_STRAY_LUT = np.ones(256, dtype=np.uint8)
_STRAY_LUT[[0, UNKNOWN, 255]] = 0


def _as_unit(a: np.ndarray) -> np.ndarray:
    """Alpha as float64 in [0, 1], computed the way the reference does (uint8 / 255.0)."""
    return a / 255.0 if a.dtype == np.uint8 else a


# ------------------------------------------------------------------------------------------ SAD and MSE
def _f32_terms(square: bool) -> np.ndarray:
    """MATLAB's single per-pixel SAD/MSE terms for every |p - t| in 0..255: |single(p)-single(t)|/255 (squared)."""
    e = np.arange(256, dtype=np.float32) / np.float32(255)
    return (e * e if square else e).astype(np.float64)


_F32_ABS, _F32_SQ = _f32_terms(False), _f32_terms(True)


def _sad_mse(pred: np.ndarray, gt: np.ndarray, unknown_idx: np.ndarray, protocol: str) -> tuple[float, float]:
    n_unknown = unknown_idx.size
    if protocol == "mmagic":
        if pred.dtype == np.uint8:
            # integer sums are exact; one division gives the float64 sum of |p/255 - g/255| to rounding
            l1 = cv2.norm(pred, gt, cv2.NORM_L1) / 255.0
            l2 = cv2.norm(pred, gt, cv2.NORM_L2SQR) / 65025.0
        else:
            d = pred - gt / 255.0
            l1, l2 = float(np.abs(d).sum()), float((d * d).sum())
        return l1 / 1000, (l2 / n_unknown if n_unknown else 0.0)
    if n_unknown == 0:
        return 0.0, 0.0  # MATLAB's MSE would be 0/0 = NaN; see docs/metrics.md
    if pred.dtype == np.uint8:
        hist = np.bincount(cv2.absdiff(pred, gt).ravel()[unknown_idx], minlength=256)
        l1, l2 = float(hist @ _F32_ABS), float(hist @ _F32_SQ)
    else:
        p32 = pred.ravel()[unknown_idx].astype(np.float32)
        e = np.abs(p32 - gt.ravel()[unknown_idx].astype(np.float32) / np.float32(255))
        l1, l2 = float(e.astype(np.float64).sum()), float((e * e).astype(np.float64).sum())
    return l1 / 1000, l2 / n_unknown


def sad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, protocol: str = "mmagic") -> float:
    """Sum of absolute differences / 1000 (whole image under "mmagic", unknown region under "matlab")."""
    return compute_metrics(pred, gt, trimap, protocol, only=("SAD",))["SAD"]


def mse(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, protocol: str = "mmagic") -> float:
    """Sum of squared differences / number of unknown pixels (not / 1000); 0 without unknown pixels."""
    return compute_metrics(pred, gt, trimap, protocol, only=("MSE",))["MSE"]


def gradient_error(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, protocol: str = "mmagic") -> float:
    """Squared difference of Gaussian-gradient magnitudes over the unknown region / 1000."""
    return compute_metrics(pred, gt, trimap, protocol, only=("GRAD",))["GRAD"]


def connectivity_error(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, protocol: str = "mmagic") -> float:
    """Connectivity error (step 0.1, 4-connectivity, 0.15 threshold) over the unknown region / 1000."""
    return compute_metrics(pred, gt, trimap, protocol, only=("CONN",))["CONN"]


# ------------------------------------------------------------------------------------------------ tiles
def _tiles_of(flat: np.ndarray, w: int, tile: int, tw: int, n_tiles: int) -> np.ndarray:
    """Sorted flat indices (row-major on the tile grid) of the tiles holding the given pixels."""
    y, x = np.divmod(flat, w)
    return np.flatnonzero(np.bincount((y // tile) * tw + x // tile, minlength=n_tiles))


def _window_index(shape: tuple[int, int], tw: int, tiles: np.ndarray, tile: int, margin: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices of the (tile + 2·margin)² windows around `tiles`, shape (n, size, size), and where
    a window leaves the image. Indices are clipped to the image, which is OpenCV's BORDER_REPLICATE; reading
    windows by index avoids a padded copy of the whole image."""
    offsets = np.arange(-margin, tile + margin)
    return _clipped_index(shape, (tiles // tw * tile)[:, None] + offsets, (tiles % tw * tile)[:, None] + offsets)


def _clipped_index(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (n, len(rows), len(cols)) of windows given their row and column lists, clipped to the image,
    and where they leave it."""
    h, w = shape
    index = np.clip(rows, 0, h - 1)[:, :, None] * w + np.clip(cols, 0, w - 1)[:, None, :]
    outside = ((rows < 0) | (rows >= h))[:, :, None] | ((cols < 0) | (cols >= w))[:, None, :]
    return index, outside


# ------------------------------------------------------------------------------------------------- GRAD
def _minmax_affine(a: np.ndarray) -> tuple[float, float]:
    """Scale and shift of cv2.normalize(a/255, NORM_MINMAX) over the whole image (a constant image gives 0)."""
    if a.dtype == np.uint8:
        lo, hi = cv2.minMaxLoc(a)[:2]
        lo, hi = lo / 255.0, hi / 255.0
    else:
        lo, hi = float(a.min()), float(a.max())
    scale = 1.0 / (hi - lo) if hi - lo > np.finfo(np.float64).eps else 0.0
    return scale, -lo * scale


def _gradient_magnitude(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """|∇| of the min-max normalised map in the windows `index` (n, rows, cols), without their margins."""
    scale, shift = _minmax_affine(a)
    n, rows, cols = index.shape
    norm = _as_unit(a.ravel().take(index.reshape(n * rows, cols))) * scale + shift
    # windows are stacked vertically; a filter crosses into the next window only in the margins cut off below
    fx = cv2.sepFilter2D(norm, cv2.CV_64F, _DERIV, _SMOOTH, borderType=cv2.BORDER_REPLICATE)
    fy = cv2.sepFilter2D(norm, cv2.CV_64F, _SMOOTH, _DERIV, borderType=cv2.BORDER_REPLICATE)
    inner = (slice(None), slice(_MARGIN, rows - _MARGIN), slice(_MARGIN, cols - _MARGIN))
    fx, fy = fx.reshape(n, rows, cols)[inner], fy.reshape(n, rows, cols)[inner]
    return np.sqrt(fx * fx + fy * fy)


def _grad(pred: np.ndarray, gt: np.ndarray, unknown: np.ndarray, unknown_idx: np.ndarray, protocol: str) -> float:
    if unknown_idx.size == 0:
        return 0.0
    h, w = unknown.shape
    tw = -(-w // _GRAD_TILE)
    tiles = _tiles_of(unknown_idx, w, _GRAD_TILE, tw, -(-h // _GRAD_TILE) * tw)
    y, x = np.divmod(unknown_idx, w)
    box = np.arange(y[0] - _MARGIN, y[-1] + _MARGIN + 1), np.arange(x.min() - _MARGIN, x.max() + _MARGIN + 1)
    if box[0].size * box[1].size < tiles.size * (_GRAD_TILE + 2 * _MARGIN) ** 2:  # one window: the bounding box
        index, outside = _clipped_index((h, w), box[0][None], box[1][None])
    else:
        index, outside = _window_index((h, w), tw, tiles, _GRAD_TILE, _MARGIN)
    inner = (slice(None), slice(_MARGIN, -_MARGIN), slice(_MARGIN, -_MARGIN))
    inside = (unknown.ravel().take(index[inner]) > 0) & ~outside[inner]
    amp_p, amp_g = _gradient_magnitude(pred, index)[inside], _gradient_magnitude(gt, index)[inside]
    if protocol == "matlab":  # (single(amp_pred) - single(amp_gt))^2 in single
        d = amp_p.astype(np.float32) - amp_g.astype(np.float32)
        return float((d * d).astype(np.float64).sum()) / 1000
    d = amp_g - amp_p
    return float((d * d).sum()) / 1000


# ------------------------------------------------------------------------------------------------- CONN
def _levels(pred: np.ndarray, gt: np.ndarray, protocol: str) -> np.ndarray:
    """Per pixel, how many thresholds t_1..t_10 both alphas reach: pixel ∈ M_i ⇔ level ≥ i (uint8 HxW).

    (g ≥ t) & (p ≥ t) is min(p, g) ≥ t, and the thresholds are increasing, so one count per pixel holds all ten
    intersections. Alphas are compared as the protocol holds them: float64 (mmagic) or single (MATLAB).
    """
    thresholds = THRESHOLDS[protocol][1:]
    unit = np.float32 if protocol == "matlab" else np.float64
    if pred.dtype == np.uint8:
        values = np.arange(256, dtype=unit) / unit(255)
        lut = np.searchsorted(thresholds, values.astype(np.float64), side="right").astype(np.uint8)
        return cv2.LUT(cv2.min(pred, gt), lut)
    both = np.minimum(pred.astype(unit), gt.astype(unit) / unit(255))
    return np.searchsorted(thresholds, both.astype(np.float64), side="right").astype(np.uint8)


def _areas(labels: np.ndarray, n: int) -> np.ndarray:
    """Pixel count of each label 0..n-1 of a 2-D label image (int64).

    OpenCV's 16-bit histogram is several times faster than numpy.bincount (which first widens every label to
    64 bits); its float32 counts are exact below 2**24 pixels, else bincount is used.
    """
    if n <= 65536 and labels.size < (1 << 24):
        return cv2.calcHist([labels.astype(np.uint16)], [0], None, [n], [0, n]).ravel().astype(np.int64)
    return np.bincount(labels.ravel(), minlength=n)


def _full_omega(level: np.ndarray, i: int, column_major: bool) -> np.ndarray:
    """Ω_i by labelling the whole image (used only for exact size ties): the first largest component, counted
    in row-major order (OpenCV, as mmagic) or column-major order (as MATLAB's bwconncomp)."""
    mask = level >= i
    if column_major:
        labels = scipy.ndimage.label(mask.T, structure=_CROSS)[0].T
    else:
        labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)[1]
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    return labels == int(np.argmax(areas))


def _omega_depth(level: np.ndarray, unknown_idx: np.ndarray, n_thr: int, column_major: bool) -> np.ndarray:
    """Depth (see `_conn_depth`) of each unknown pixel, from Ω_i = the largest whole-image component of
    M_i = {level ≥ i}, i = 1..n_thr; an exact size tie for the largest is settled by `_full_omega`.

    Pixels of level 10 ("core") lie in every M_i: they are labelled once over the whole image. Tiles holding
    a pixel of level 1..9 ("dynamic" tiles) are stacked into a mosaic, one copy per threshold with a blank
    row after each tile, and labelled in one call. Components of M_i are then the connected components of a
    small graph: nodes are the mosaic pieces and the core components (per threshold), edges join (a) a piece
    and the core component of a core pixel in it (one pixel per core piece of a tile, which lies in one
    mosaic piece at every threshold) and (b) pieces on either side of a tile border, or a piece and the core
    component across it (static tiles hold only level 0 and core pixels, so paths through them stay inside
    one core component). Node weights are pixel counts (core components: their pixels outside the mosaic),
    so component areas are the whole-image ones.
    """
    h, w = level.shape
    t = _CONN_TILE
    n_core, core_labels = cv2.connectedComponents(cv2.compare(level, 10, cv2.CMP_EQ), connectivity=4,
                                                  ltype=cv2.CV_32S)
    core_area = _areas(core_labels, n_core)
    flat_level, flat_core = level.ravel(), core_labels.ravel()
    th, tw = -(-h // t), -(-w // t)
    tiles = _tiles_of(np.flatnonzero((level >= 1) & (level <= 9)), w, t, tw, th * tw)
    slot = np.full(th * tw, -1, dtype=np.int64)
    slot[tiles] = np.arange(tiles.size)

    def mosaic_pos(flat: np.ndarray) -> np.ndarray:
        """Position in one mosaic copy of global pixels (−1 for pixels in static tiles)."""
        y, x = np.divmod(flat, w)
        s = slot[(y // t) * tw + x // t]
        return np.where(s >= 0, (s * (t + 1) + y % t) * t + x % t, -1)

    index, outside = _window_index((h, w), tw, tiles, t, 0)
    stack = np.zeros((tiles.size, t + 1, t), dtype=np.uint8)
    stack[:, :t] = np.where(outside, 0, flat_level.take(index))
    mosaic = stack.reshape(-1, t)
    cores = np.zeros((tiles.size, t + 1, t), dtype=np.int32)
    cores[:, :t] = np.where(outside, 0, flat_core.take(index))
    core_area -= _areas(cores.reshape(-1, t), n_core) if tiles.size else 0
    cores = cores.ravel()
    core_area[0] = 0
    # (a) one pixel of every core piece of a tile (the mosaic's separators keep tiles apart)
    rep_pos = np.zeros(1, dtype=np.int64)
    if tiles.size:
        n_sub, sub = cv2.connectedComponents(cv2.compare(mosaic, 10, cv2.CMP_EQ), connectivity=4,
                                             ltype=cv2.CV_32S)
        rep_pos = np.zeros(n_sub, dtype=np.int64)
        in_core = np.flatnonzero(sub.ravel())
        rep_pos[sub.ravel()[in_core]] = in_core
    rep_pos, rep_core = rep_pos[1:], cores[rep_pos[1:]]
    # (b) 4-neighbour pairs across the borders of dynamic tiles: (y, jt-1)-(y, jt) and (it-1, x)-(it, x)
    dyn = np.zeros(th * tw, dtype=bool)
    dyn[tiles] = True
    dyn = dyn.reshape(th, tw)
    yy, jj = np.nonzero(np.repeat(dyn[:, :-1] | dyn[:, 1:], t, axis=0)[:h])
    ii, xx = np.nonzero(np.repeat(dyn[:-1, :] | dyn[1:, :], t, axis=1)[:, :w])
    a = np.concatenate([yy * w + (jj + 1) * t - 1, ((ii + 1) * t - 1) * w + xx]).astype(np.int64)
    b = a + np.concatenate([np.ones(yy.size, dtype=np.int64), np.full(ii.size, w, dtype=np.int64)])
    keep = (flat_level[a] > 0) & (flat_level[b] > 0)
    a, b = a[keep], b[keep]
    pa, pb = mosaic_pos(a), mosaic_pos(b)
    both, a_dyn, b_dyn = (pa >= 0) & (pb >= 0), (pa >= 0) & (pb < 0), (pa < 0) & (pb >= 0)
    dd_a, dd_b, dd_lv = pa[both], pb[both], np.minimum(flat_level[a[both]], flat_level[b[both]])
    ds_p = np.concatenate([pa[a_dyn], pb[b_dyn]])
    ds_core = np.concatenate([flat_core[b[a_dyn]], flat_core[a[b_dyn]]])
    ds_lv = np.concatenate([flat_level[a[a_dyn]], flat_level[b[b_dyn]]])

    # one labelling of the n_thr mosaic copies; labels of copy i form one contiguous range (row-major order)
    thr = np.arange(1, n_thr + 1)
    size = mosaic.size
    if size:
        copies = np.empty((n_thr, *mosaic.shape), dtype=np.uint8)
        for i in range(n_thr):
            cv2.compare(mosaic, i + 1, cv2.CMP_GE, dst=copies[i])
        copies = copies.reshape(-1, t)
        n_lab, labels = cv2.connectedComponents(copies, connectivity=4, ltype=cv2.CV_32S)
        sizes = _areas(labels, n_lab)
        labels = labels.ravel()
    else:  # nothing changes between thresholds: only core components
        n_lab, labels, sizes = 1, np.zeros(1, dtype=np.int32), np.zeros(1, dtype=np.int64)
    weights = np.concatenate([sizes, np.tile(core_area, n_thr)])
    weights[0] = 0
    offset = (thr - 1) * size

    def core_node(i_idx: np.ndarray, core: np.ndarray) -> np.ndarray:
        return n_lab + i_idx * n_core + core

    src, dst = [], []
    src.append(labels[(offset[:, None] + rep_pos[None, :]).ravel()])
    dst.append(core_node(np.repeat(thr - 1, rep_pos.size), np.tile(rep_core, n_thr)))
    i_idx, k = np.nonzero(dd_lv[None, :] >= thr[:, None])
    src.append(labels[offset[i_idx] + dd_a[k]])
    dst.append(labels[offset[i_idx] + dd_b[k]])
    i_idx, k = np.nonzero(ds_lv[None, :] >= thr[:, None])
    src.append(labels[offset[i_idx] + ds_p[k]])
    dst.append(core_node(i_idx, ds_core[k]))
    src_a, dst_a = np.concatenate(src), np.concatenate(dst)
    n_nodes = weights.size
    graph = coo_matrix((np.ones(src_a.size, dtype=np.int8), (src_a, dst_a)), shape=(n_nodes, n_nodes))
    n_comp, comp = connected_components(graph, directed=False)
    comp_size = np.bincount(comp, weights=weights)

    # threshold of every node, hence of every component (edges never join two thresholds)
    ends = labels.reshape(n_thr, size).max(axis=1) if size else np.zeros(n_thr, dtype=np.int32)
    ends = np.maximum.accumulate(ends)
    node_thr = np.concatenate([np.searchsorted(ends, np.arange(n_lab), side="left"),
                               np.repeat(np.arange(n_thr), n_core)])
    comp_thr = np.zeros(n_comp, dtype=np.int64)
    comp_thr[comp] = node_thr
    live = comp_size > 0
    best = np.zeros(n_thr)
    np.maximum.at(best, comp_thr[live], comp_size[live])
    is_best = live & (comp_size == best[comp_thr])
    n_best = np.bincount(comp_thr[is_best], minlength=n_thr)
    winner = np.full(n_thr, -1, dtype=np.int64)
    winner[comp_thr[is_best]] = np.flatnonzero(is_best)
    winner[n_best != 1] = -1

    # depth: walk the thresholds with the unknown pixels still in every Ω so far (fewer at each step); pixels
    # in dynamic tiles are looked up in the mosaic copies, those in static tiles (level 10) by core component
    node_in = np.zeros(comp_size.size, dtype=bool)
    node_in[winner[winner >= 0]] = True
    node_in = node_in[comp]
    # (a pixel below level i reads label 0 in copy i, the weightless background: no separate level test)
    alive = np.flatnonzero(flat_level[unknown_idx] >= 1)
    pos = mosaic_pos(unknown_idx[alive])
    groups = [(alive[pos >= 0], pos[pos >= 0], True), (alive[pos < 0], flat_core[unknown_idx[alive[pos < 0]]], False)]
    depth = np.zeros(unknown_idx.size, dtype=np.intp)
    tied = set((np.flatnonzero(n_best > 1) + 1).tolist())
    for i in range(1, n_thr + 1):
        full = _full_omega(level, i, column_major).ravel() if i in tied else None
        for g, (idx, where, in_mosaic) in enumerate(groups):
            if full is not None:
                keep = full[unknown_idx[idx]]
            elif in_mosaic:
                keep = node_in[labels[offset[i - 1] + where]]
            else:
                keep = node_in[core_node(i - 1, where)]
            depth[idx[~keep]] = i - 1
            groups[g] = (idx[keep], where[keep], in_mosaic)
        if not any(group[0].size for group in groups):
            break
    for idx, _, _ in groups:
        depth[idx] = n_thr
    return depth


def _conn_depth(level: np.ndarray, unknown_idx: np.ndarray, column_major: bool) -> np.ndarray:
    """For each unknown pixel, for how many leading thresholds it stayed in every Ω_j (so l = t[depth]).

    The reference assigns l = t_{i-1} to every still-unassigned pixel outside Ω_i; a pixel is unassigned after
    step i exactly when it lies in Ω_1 ∩ … ∩ Ω_i, so l = t[depth] with depth the length of that run (10 → 1).
    An empty intersection gives an empty Ω (mmagic's rule and the GCA-Matting MATLAB copy's). Thresholds
    above the highest level of an unknown pixel cannot change any depth and are skipped.
    """
    n_thr = int(level.ravel()[unknown_idx].max())
    if n_thr == 0:
        return np.zeros(unknown_idx.size, dtype=np.intp)
    return _omega_depth(level, unknown_idx, n_thr, column_major)


def _phi_table(thresholds: np.ndarray, single: bool) -> np.ndarray:
    """φ = 1 − d·[d ≥ 0.15], d = alpha − t[depth], for every (depth 0..10, uint8 alpha) pair.

    Same operations as the reference per pixel (float64, or single as MATLAB), so per-pixel φ are identical.
    """
    if single:
        a = np.arange(256, dtype=np.float32)[None, :] / np.float32(255)
        d = a - thresholds.astype(np.float32)[:, None]
        return (np.float32(1) - d * (d >= 0.15)).astype(np.float32)
    d = (np.arange(256) / 255.0)[None, :] - thresholds[:, None]
    return 1 - d * (d >= 0.15)


_PHI = {(p, s): _phi_table(THRESHOLDS[p], s) for p, s in (("mmagic", False), ("matlab", True))}


def _phi(values: np.ndarray, depth: np.ndarray, protocol: str) -> np.ndarray:
    thresholds = THRESHOLDS[protocol]
    if values.dtype == np.uint8:
        return _PHI[(protocol, protocol == "matlab")][depth, values]
    if protocol == "matlab":
        d = values.astype(np.float32) - thresholds[depth].astype(np.float32)
        return np.float32(1) - d * (d >= 0.15)
    d = values - thresholds[depth]
    return 1 - d * (d >= 0.15)


def _conn(pred: np.ndarray, gt: np.ndarray, unknown_idx: np.ndarray, protocol: str) -> float:
    if unknown_idx.size == 0:
        return 0.0
    level = _levels(pred, gt, protocol)
    depth = _conn_depth(level, unknown_idx, column_major=protocol == "matlab")
    p, g = pred.ravel()[unknown_idx], gt.ravel()[unknown_idx]
    diff = np.abs(_phi(g, depth, protocol) - _phi(p, depth, protocol))
    return float(diff.astype(np.float64).sum()) / 1000


# --------------------------------------------------------------------------------------------- one image
def compute_metrics(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray, protocol: str = "mmagic", *,
                    name: str | None = None, only: Sequence[str] = METRIC_NAMES) -> dict[str, float]:
    """SAD, MSE, GRAD and CONN of one prediction.

    pred: uint8 HxW (0..255) or float HxW in [0, 1] (used as is, not quantised); gt: uint8 HxW; trimap: uint8
    HxW in {0, 128, 255}. `name` (a file or image name) is used in error messages; `only` picks metrics.
    """
    _check_protocol(protocol)
    pred, gt, trimap = _prepare(pred, gt, trimap, protocol, name)
    unknown_bool = trimap == UNKNOWN
    unknown_idx = np.flatnonzero(unknown_bool)  # much faster on bool than on a 0/255 map
    unknown = unknown_bool.view(np.uint8)
    out: dict[str, float] = {}
    if "SAD" in only or "MSE" in only:
        out["SAD"], out["MSE"] = _sad_mse(pred, gt, unknown_idx, protocol)
    if "GRAD" in only:
        out["GRAD"] = _grad(pred, gt, unknown, unknown_idx, protocol)
    if "CONN" in only:
        out["CONN"] = _conn(pred, gt, unknown_idx, protocol)
    return {k: float(out[k]) for k in METRIC_NAMES if k in only}


# ------------------------------------------------------------------------------------------- many images
MapLike = np.ndarray | str | os.PathLike


def _load(item: MapLike, kind: str) -> np.ndarray:
    """An array as given, or a file read with dimatting.io (prediction .png/.npy, GT alpha, trimap)."""
    if isinstance(item, np.ndarray):
        return item
    path = Path(item)
    if kind == "pred" and path.suffix.lower() == ".npy":
        if not path.is_file():
            raise InputError(f"{path}: prediction file not found; check the path")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: cannot read the .npy prediction ({exc}); save it with numpy.save") from None
        return array
    if kind == "trimap":
        return io.read_trimap(path)
    return io.read_gray(path, "prediction" if kind == "pred" else "alpha")


def _one(job: tuple[str, MapLike, MapLike, MapLike, str]) -> tuple[str, dict[str, float]]:
    name, pred, gt, trimap, protocol = job
    label = str(pred) if not isinstance(pred, np.ndarray) else name
    return name, compute_metrics(_load(pred, "pred"), _load(gt, "gt"), _load(trimap, "trimap"), protocol,
                                 name=label)


def _default_name(item: MapLike, index: int) -> str:
    return Path(item).stem if not isinstance(item, np.ndarray) else f"{index:04d}"


def evaluate(preds: Sequence[MapLike], gts: Sequence[MapLike], trimaps: Sequence[MapLike], protocol: str = "mmagic",
             names: Sequence[str] | None = None, workers: int = 1,
             progress: Callable[[int], None] | None = None) -> dict:
    """Metrics of many images: {"protocol", "n", "mean": {SAD, MSE, GRAD, CONN}, "images": {name: {...}}}.

    Items are arrays or file paths (paths are read in the workers, so reading is parallel too). Names default
    to the prediction files' stems (arrays: their index). `progress(k)` is called after each image with the
    number done so far; the mean is the plain average over images, as mmagic's evaluator computes it.
    """
    _check_protocol(protocol)
    if not (len(preds) == len(gts) == len(trimaps)):
        raise InputError(f"evaluate: {len(preds)} predictions, {len(gts)} GT alphas and {len(trimaps)} trimaps; "
                         "give one of each per image")
    names = list(names) if names is not None else [_default_name(p, i) for i, p in enumerate(preds)]
    if len(names) != len(preds):
        raise InputError(f"evaluate: {len(names)} names for {len(preds)} predictions")
    duplicates = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    if duplicates:
        raise InputError(f"evaluate: duplicate image names {duplicates[:5]}; names must be unique")
    jobs = [(n, p, g, t, protocol) for n, p, g, t in zip(names, preds, gts, trimaps, strict=True)]
    images: dict[str, dict[str, float]] = {}
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            results = pool.map(_one, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
            for k, (name, values) in enumerate(results, 1):
                images[name] = values
                if progress:
                    progress(k)
    else:
        for k, job in enumerate(jobs, 1):
            name, values = _one(job)
            images[name] = values
            if progress:
                progress(k)
    n = len(images)
    mean = {m: (float(np.mean([v[m] for v in images.values()])) if n else 0.0) for m in METRIC_NAMES}
    return {"protocol": protocol, "n": n, "mean": mean, "images": images}


_DECIMALS = {"SAD": 4, "MSE": 6, "GRAD": 4, "CONN": 4}


def format_table(result: dict, per_image: bool = False) -> str:
    """An aligned text table of an `evaluate` result: optional per-image rows, then the mean row."""
    rows = [(name, values) for name, values in result["images"].items()] if per_image else []
    rows.append((f"mean (n={result['n']})", result["mean"]))
    cells = [[name] + [f"{values[m]:.{_DECIMALS[m]}f}" for m in METRIC_NAMES] for name, values in rows]
    header = ["image", *METRIC_NAMES]
    widths = [max(len(r[c]) for r in [*cells, header]) for c in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join([r[0].ljust(widths[0])] + [v.rjust(wd) for v, wd in zip(r[1:], widths[1:], strict=True)])

    out = [f"protocol: {result['protocol']}", line(header), "  ".join("-" * wd for wd in widths)]
    out += [line(r) for r in cells[:-1]]
    if per_image and len(cells) > 1:
        out.append("  ".join("-" * wd for wd in widths))
    out.append(line(cells[-1]))
    return "\n".join(out)
