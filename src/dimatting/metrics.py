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
- GRAD and CONN run as compiled kernels (dimatting.metrics_kernels, C built at install, imported on first
  use): GRAD filters with the separable form of the rank-1 kernel only where unknown pixels read it, the min-max
  normalisation using the whole image's extremes, as the reference does; CONN builds the components of all ten
  intersections in one union-find pass (level-10 components from runs found in the same sweep), tracking the
  largest with the protocol's tie-break.
No torch here: the tester, the CLI and users' scripts share this module.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from dimatting import io
from dimatting.errors import InputError

logger = logging.getLogger("dimatting.metrics")

PROTOCOLS = ("mmagic", "matlab")
METRIC_NAMES = ("SAD", "MSE", "GRAD", "CONN")
UNKNOWN = 128

_MARGIN = 4  # half size of the 9x9 gradient kernel (sigma 1.4, epsilon 0.01)


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
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate the three maps; return (pred uint8 or float64 in [0,1], gt uint8, trimap uint8, the flat indices
    of the unknown pixels in row-major order).

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
    if pred.dtype == np.uint8:
        full = 255
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
    from dimatting.metrics_kernels import scan_trimap

    stray, bad, unknown_idx = scan_trimap(pred, trimap, full)
    if stray:
        raise InputError(f"{label}: trimap has {stray} pixels outside {{0,128,255}}; normalise it "
                         "(dimatting.io.read_trimap does)")
    if protocol == "mmagic" and bad:
        logger.warning("%s: prediction is not masked by the trimap (%d known pixels differ); masked before "
                       "evaluation (mmagic would refuse it)", label, bad)
        pred = pred.copy()
        pred[trimap == 0] = 0
        pred[trimap == 255] = full
    return pred, gt, trimap, unknown_idx


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


def _grad(pred: np.ndarray, gt: np.ndarray, unknown_idx: np.ndarray, protocol: str) -> float:
    if unknown_idx.size == 0:
        return 0.0
    from dimatting.metrics_kernels import grad_terms

    # the kernel filters raw values: |∇(s·a/255 + shift)| = (s/255)·|∇a| for uint8 maps (the shift drops out)
    factors = [_minmax_affine(a)[0] / (255.0 if a.dtype == np.uint8 else 1.0) for a in (pred, gt)]
    terms = grad_terms(pred, gt, unknown_idx, factors[0], factors[1], _SMOOTH, _DERIV, protocol == "matlab")
    return float(terms.sum()) / 1000


# ------------------------------------------------------------------------------------------------- CONN
def _levels(pred: np.ndarray, gt: np.ndarray, protocol: str) -> np.ndarray:
    """Per pixel, how many thresholds t_1..t_10 both alphas reach: pixel ∈ M_i ⇔ level ≥ i (uint8 HxW).

    (g ≥ t) & (p ≥ t) is min(p, g) ≥ t, and the thresholds are increasing, so one count per pixel holds all ten
    intersections. Alphas are compared as the protocol holds them: float64 (mmagic) or single (MATLAB).
    """
    if pred.dtype == np.uint8:
        from dimatting.metrics_kernels import conn_levels

        return conn_levels(pred, gt, _LEVEL_CUTS[protocol])
    unit = np.float32 if protocol == "matlab" else np.float64
    both = np.minimum(pred.astype(unit), gt.astype(unit) / unit(255))
    return np.searchsorted(THRESHOLDS[protocol][1:], both.astype(np.float64), side="right").astype(np.uint8)


def _level_cuts(protocol: str) -> np.ndarray:
    """For uint8 alphas, the least value that passes each threshold t_1..t_10 as the protocol holds alphas
    (float64 v/255, or single): level = how many cuts min(p, g) reaches, the same count as comparing with
    the thresholds (a uint8 alpha passes t_k exactly when it is ≥ cut k, the quotient growing with v)."""
    unit = np.float32 if protocol == "matlab" else np.float64
    values = (np.arange(256, dtype=unit) / unit(255)).astype(np.float64)
    level = np.searchsorted(THRESHOLDS[protocol][1:], values, side="right")
    assert level[-1] == 10  # 255/255 = 1 passes every threshold, so every cut is a uint8 value
    return np.searchsorted(level, np.arange(1, 11), side="left").astype(np.uint8)


_LEVEL_CUTS = {p: _level_cuts(p) for p in PROTOCOLS}


def _conn_depth(level: np.ndarray, unknown_idx: np.ndarray, column_major: bool) -> np.ndarray:
    """For each unknown pixel, for how many leading thresholds it stayed in every Ω_j (so l = t[depth]).

    The reference assigns l = t_{i-1} to every still-unassigned pixel outside Ω_i; a pixel is unassigned after
    step i exactly when it lies in Ω_1 ∩ … ∩ Ω_i, so l = t[depth] with depth the length of that run (10 → 1).
    An empty intersection gives an empty Ω (mmagic's rule and the GCA-Matting MATLAB copy's).
    """
    from dimatting.metrics_kernels import conn_depth

    return conn_depth(level, unknown_idx, column_major)


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
    if pred.dtype == np.uint8:
        from dimatting.metrics_kernels import conn_terms

        return float(conn_terms(pred, gt, unknown_idx, depth, _PHI[(protocol, protocol == "matlab")]).sum()) / 1000
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
    pred, gt, trimap, unknown_idx = _prepare(pred, gt, trimap, protocol, name)
    out: dict[str, float] = {}
    if "SAD" in only or "MSE" in only:
        out["SAD"], out["MSE"] = _sad_mse(pred, gt, unknown_idx, protocol)
    if "GRAD" in only:
        out["GRAD"] = _grad(pred, gt, unknown_idx, protocol)
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


# One task: a GT alpha and a trimap with every prediction scored against them, so each map is decoded once
# (a Comp-1k test set scores 20 composites against each of its 50 GT alphas).
Group = tuple[MapLike, MapLike, list[tuple[str, MapLike]], str]
IMAGES_PER_WORKER = 8  # "auto" adds a process per this many images: starting the workers costs ~0.2 s, ~8 images


def _score_group(group: Group) -> list[tuple[str, dict[str, float]]]:
    gt_item, trimap_item, items, protocol = group
    gt, trimap = _load(gt_item, "gt"), _load(trimap_item, "trimap")
    return [(name, compute_metrics(_load(pred, "pred"), gt, trimap, protocol,
                                   name=str(pred) if not isinstance(pred, np.ndarray) else name))
            for name, pred in items]


def _groups(names: list[str], preds: Sequence[MapLike], gts: Sequence[MapLike], trimaps: Sequence[MapLike],
            protocol: str) -> list[Group]:
    """Predictions grouped by the (GT, trimap) files they are scored against, in first-appearance order;
    arrays are never shared (each its own group)."""
    groups: dict[object, Group] = {}
    for k, (name, pred, gt, trimap) in enumerate(zip(names, preds, gts, trimaps, strict=True)):
        key = k if isinstance(gt, np.ndarray) or isinstance(trimap, np.ndarray) else (str(gt), str(trimap))
        groups.setdefault(key, (gt, trimap, [], protocol))[2].append((name, pred))
    return list(groups.values())


def worker_count(workers: int | str, n_images: int) -> int:
    """Processes for `n_images`: a count as given, or "auto": one per available core while each gets at least
    IMAGES_PER_WORKER images (fewer images are quicker in this process than a process start)."""
    if workers == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(cores, n_images // IMAGES_PER_WORKER))
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise InputError(f"workers={workers!r}: give a process count >= 1 or 'auto'")
    return workers


def _single_threaded_opencv() -> None:
    """Worker start: one OpenCV thread per process (the processes already use every core)."""
    cv2.setNumThreads(1)


def _pool(workers: int) -> ProcessPoolExecutor:
    """Workers forked from a fresh single-threaded server that imported this module once (numpy, OpenCV, the
    compiled kernels), or spawned where there is no such server. Never forked from the caller: its OpenCV and
    BLAS thread pools are running, and a forked child can wait forever on a lock one of those threads held.
    As with every multiprocessing start on macOS and Windows, each worker imports the caller's `__main__`, so
    scripts need the `if __name__ == "__main__":` guard."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
    else:
        context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_single_threaded_opencv)


def _default_name(item: MapLike, index: int) -> str:
    return Path(item).stem if not isinstance(item, np.ndarray) else f"{index:04d}"


def evaluate(preds: Sequence[MapLike], gts: Sequence[MapLike], trimaps: Sequence[MapLike], protocol: str = "mmagic",
             names: Sequence[str] | None = None, workers: int | str = 1,
             progress: Callable[[int], None] | None = None) -> dict:
    """Metrics of many images: {"protocol", "n", "mean": {SAD, MSE, GRAD, CONN}, "images": {name: {...}}}.

    Items are arrays or file paths (paths are read in the workers, so reading is parallel too; a GT alpha or
    trimap file shared by several predictions is read once). Names default to the prediction files' stems
    (arrays: their index). `workers`: processes, or "auto" (see `worker_count`). `progress(k)` is called as
    images finish with the number done so far; the mean is the plain average over images, as mmagic's
    evaluator computes it.
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
    groups = _groups(names, preds, gts, trimaps, protocol)
    n_workers = min(worker_count(workers, len(names)), len(groups))
    scored: dict[str, dict[str, float]] = {}

    def collect(results: Iterable[list[tuple[str, dict[str, float]]]]) -> None:
        for group_result in results:
            scored.update(group_result)
            if progress:
                progress(len(scored))

    if n_workers > 1:
        with _pool(n_workers) as pool:
            collect(pool.map(_score_group, groups, chunksize=max(1, len(groups) // (8 * n_workers))))
    else:
        collect(map(_score_group, groups))
    images = {name: scored[name] for name in names}
    n = len(images)
    mean = {m: (float(np.mean([v[m] for v in images.values()])) if n else 0.0) for m in METRIC_NAMES}
    return {"protocol": protocol, "n": n, "mean": mean, "images": images}


_DECIMALS = {"SAD": 4, "MSE": 6, "GRAD": 4, "CONN": 4}


def format_table(result: dict, per_image: bool = False) -> str:
    """An aligned text table of an `evaluate` result: optional per-image rows, then the mean row. Columns are
    the metrics the result holds (a config may score a subset, e.g. `test_evaluator=[dict(type='SAD')]`)."""
    names = [m for m in METRIC_NAMES if m in result["mean"]]
    rows = [(name, values) for name, values in result["images"].items()] if per_image else []
    rows.append((f"mean (n={result['n']})", result["mean"]))
    cells = [[name] + [f"{values[m]:.{_DECIMALS[m]}f}" for m in names] for name, values in rows]
    header = ["image", *names]
    widths = [max(len(r[c]) for r in [*cells, header]) for c in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join([r[0].ljust(widths[0])] + [v.rjust(wd) for v, wd in zip(r[1:], widths[1:], strict=True)])

    out = [f"protocol: {result['protocol']}", line(header), "  ".join("-" * wd for wd in widths)]
    out += [line(r) for r in cells[:-1]]
    if per_image and len(cells) > 1:
        out.append("  ".join("-" * wd for wd in widths))
    out.append(line(cells[-1]))
    return "\n".join(out)
