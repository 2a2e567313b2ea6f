"""numba kernels behind dimatting.metrics: GRAD's restricted separable filter and CONN's one-pass union-find.

Kept apart so that `import dimatting.metrics` stays light: this module (and numba with it) is imported on the
first GRAD or CONN computation. `cache=True` stores the machine code beside this file (or in numba's user cache
when that is read-only), so only the first process on a machine pays the compile; worker processes load it.
"""

from __future__ import annotations

import threading

import cv2
import numba
import numpy as np

_HALF = 4  # half size of the 9-tap derivative-of-Gaussian factors


@numba.njit(cache=True, nogil=True)
def scan_trimap(pred: np.ndarray, trimap: np.ndarray, full: float) -> tuple[int, int, np.ndarray]:
    """One look at the trimap: pixels outside {0, 128, 255}, known pixels where pred is not 0 / `full` as the
    trimap says, and the flat indices of the unknown (128) pixels in row-major order."""
    t, p = trimap.ravel(), pred.ravel()
    stray, bad, n_unknown = 0, 0, 0
    for i in range(t.size):
        v = t[i]
        if v == 128:
            n_unknown += 1
        elif v == 0:
            bad += p[i] != 0
        elif v == 255:
            bad += p[i] != full
        else:
            stray += 1
    unknown_idx = np.empty(n_unknown, np.int64)
    j = 0
    for i in range(t.size):
        if t[i] == 128:
            unknown_idx[j] = i
            j += 1
    return stray, bad, unknown_idx


@numba.njit(cache=True, nogil=True, inline="always")
def _row_taps(pred: np.ndarray, gt: np.ndarray, r: int, x: int, smooth: np.ndarray, deriv: np.ndarray,
              out: np.ndarray) -> None:
    """Row r of pred and gt correlated with `deriv` and `smooth` at column x (replicate border), into out[0:4].

    The factors are antisymmetric (deriv) and symmetric (smooth) about the centre: pairing the taps halves
    the multiplications and the chain of dependent additions (same value up to summation order).
    """
    w = pred.shape[1]
    sc = smooth[_HALF]
    dp, sp = 0.0, sc * np.float64(pred[r, x])
    dg, sg = 0.0, sc * np.float64(gt[r, x])
    for k in range(1, _HALF + 1):
        hi, lo = min(x + k, w - 1), max(x - k, 0)
        ph, pl = np.float64(pred[r, hi]), np.float64(pred[r, lo])
        gh, gl = np.float64(gt[r, hi]), np.float64(gt[r, lo])
        dk, sk = deriv[_HALF + k], smooth[_HALF + k]
        dp += dk * (ph - pl)
        sp += sk * (ph + pl)
        dg += dk * (gh - gl)
        sg += sk * (gh + gl)
    out[0], out[1], out[2], out[3] = dp, sp, dg, sg


@numba.njit(cache=True, nogil=True, inline="always")
def _row_stretch(prow: np.ndarray, grow: np.ndarray, lo: int, hi: int, smooth: np.ndarray, deriv: np.ndarray,
                 ring: np.ndarray, s: int) -> None:
    """`_row_taps` (same sums) for the columns lo..hi-1 of one row, all ≥ 4 columns inside: one sweep without
    border clipping, which the compiler vectorises."""
    sc, s1, s2, s3, s4 = smooth[4], smooth[5], smooth[6], smooth[7], smooth[8]  # 9 taps: _HALF == 4
    d1, d2, d3, d4 = deriv[5], deriv[6], deriv[7], deriv[8]
    pd, ps, gd, gs = ring[0, s], ring[1, s], ring[2, s], ring[3, s]
    for m in range(lo, hi):
        a0, b0 = np.float64(prow[m]), np.float64(grow[m])
        a1h, a1l = np.float64(prow[m + 1]), np.float64(prow[m - 1])
        a2h, a2l = np.float64(prow[m + 2]), np.float64(prow[m - 2])
        a3h, a3l = np.float64(prow[m + 3]), np.float64(prow[m - 3])
        a4h, a4l = np.float64(prow[m + 4]), np.float64(prow[m - 4])
        b1h, b1l = np.float64(grow[m + 1]), np.float64(grow[m - 1])
        b2h, b2l = np.float64(grow[m + 2]), np.float64(grow[m - 2])
        b3h, b3l = np.float64(grow[m + 3]), np.float64(grow[m - 3])
        b4h, b4l = np.float64(grow[m + 4]), np.float64(grow[m - 4])
        pd[m] = d1 * (a1h - a1l) + d2 * (a2h - a2l) + d3 * (a3h - a3l) + d4 * (a4h - a4l)
        ps[m] = sc * a0 + s1 * (a1h + a1l) + s2 * (a2h + a2l) + s3 * (a3h + a3l) + s4 * (a4h + a4l)
        gd[m] = d1 * (b1h - b1l) + d2 * (b2h - b2l) + d3 * (b3h - b3l) + d4 * (b4h - b4l)
        gs[m] = sc * b0 + s1 * (b1h + b1l) + s2 * (b2h + b2l) + s3 * (b3h + b3l) + s4 * (b4h + b4l)


@numba.njit(cache=True, nogil=True)
def grad_terms(pred: np.ndarray, gt: np.ndarray, unknown_idx: np.ndarray, factor_p: float, factor_g: float,
               smooth: np.ndarray, deriv: np.ndarray, single: bool) -> np.ndarray:
    """(|∇g'| − |∇p'|)² at every unknown pixel, in row-major order (x' = factor·x + shift, the min-max map).

    The 9x9 kernel is rank one: a row pass (9 taps) then a column pass (9 taps). The row pass is computed
    only where the column pass of an unknown pixel reads it, each value once: a ring of 9 rows (virtual,
    unclipped row numbers; the source row is clipped, which is the replicate border) with a stamp per
    value. The column pass runs over each run of unknown pixels of a row (consecutive entries of the sorted
    flat indices `unknown_idx`), tap by tap. The shift of the normalisation drops out of a derivative, so raw
    values are filtered and the magnitude is scaled by `factor`. `single`: MATLAB's (single(a) − single(b))².
    """
    h, w = pred.shape
    taps = 2 * _HALF + 1
    n_unknown = unknown_idx.size
    out = np.empty(n_unknown, np.float64)
    ring = np.empty((4, taps, w), np.float64)  # row-derivative and row-smoothed pred, then gt
    stamp = np.full((taps, w), -(1 << 40), np.int64)  # virtual row whose values ring[:, slot, x] hold
    cell = np.empty(4, np.float64)
    # per slot, one column interval [lo, hi) known to be filtered in its row: most runs skip the stamp checks
    cover_row = np.full(taps, -(1 << 40), np.int64)
    cover_lo = np.zeros(taps, np.int64)
    cover_hi = np.zeros(taps, np.int64)
    j = 0
    while j < n_unknown:
        first = unknown_idx[j]
        y = first // w
        a = first - y * w
        x = a + 1  # the run is a..x-1
        while j + x - a < n_unknown and x < w and unknown_idx[j + x - a] == first + x - a:
            x += 1
        for k in range(taps):
            v = y - _HALF + k
            s = (v + taps) % taps
            r = min(max(v, 0), h - 1)
            if cover_row[s] == v and cover_lo[s] <= a and x <= cover_hi[s]:
                continue  # the whole run is already filtered in row v
            xx = a
            while xx < x:  # filter the stretches of the run not yet done in row v
                if stamp[s, xx] == v:
                    xx += 1
                    continue
                m0 = xx
                while xx < x and stamp[s, xx] != v:
                    stamp[s, xx] = v
                    xx += 1
                if m0 >= _HALF and xx <= w - _HALF:
                    _row_stretch(pred[r], gt[r], m0, xx, smooth, deriv, ring, s)
                else:
                    for m in range(m0, xx):
                        _row_taps(pred, gt, r, m, smooth, deriv, cell)
                        for c in range(4):
                            ring[c, s, m] = cell[c]
            if cover_row[s] == v and a <= cover_hi[s] and x >= cover_lo[s]:  # overlapping: one interval
                cover_lo[s], cover_hi[s] = min(a, cover_lo[s]), max(x, cover_hi[s])
            elif cover_row[s] != v or x - a > cover_hi[s] - cover_lo[s]:
                cover_row[s], cover_lo[s], cover_hi[s] = v, a, x
        # column pass in one sweep, taps paired about row y like the row pass: smooth for fx, deriv for fy
        m = (y + taps) % taps
        u1, u2, u3, u4 = (y + 1) % taps, (y + 2) % taps, (y + 3) % taps, (y + 4) % taps
        l1, l2, l3, l4 = (y - 1 + taps) % taps, (y - 2 + taps) % taps, (y - 3 + taps) % taps, (y - 4 + taps) % taps
        s0, s1, s2, s3, s4 = smooth[4], smooth[5], smooth[6], smooth[7], smooth[8]  # 9 taps: _HALF == 4
        d1, d2, d3, d4 = deriv[5], deriv[6], deriv[7], deriv[8]
        pd, ps, gd, gs = ring[0], ring[1], ring[2], ring[3]
        for xx in range(a, x):
            fxp = (s0 * pd[m, xx] + s1 * (pd[u1, xx] + pd[l1, xx]) + s2 * (pd[u2, xx] + pd[l2, xx])
                   + s3 * (pd[u3, xx] + pd[l3, xx]) + s4 * (pd[u4, xx] + pd[l4, xx]))
            fyp = (d1 * (ps[u1, xx] - ps[l1, xx]) + d2 * (ps[u2, xx] - ps[l2, xx])
                   + d3 * (ps[u3, xx] - ps[l3, xx]) + d4 * (ps[u4, xx] - ps[l4, xx]))
            fxg = (s0 * gd[m, xx] + s1 * (gd[u1, xx] + gd[l1, xx]) + s2 * (gd[u2, xx] + gd[l2, xx])
                   + s3 * (gd[u3, xx] + gd[l3, xx]) + s4 * (gd[u4, xx] + gd[l4, xx]))
            fyg = (d1 * (gs[u1, xx] - gs[l1, xx]) + d2 * (gs[u2, xx] - gs[l2, xx])
                   + d3 * (gs[u3, xx] - gs[l3, xx]) + d4 * (gs[u4, xx] - gs[l4, xx]))
            amp_p = factor_p * np.sqrt(fxp * fxp + fyp * fyp)
            amp_g = factor_g * np.sqrt(fxg * fxg + fyg * fyg)
            if single:
                d32 = np.float32(amp_p) - np.float32(amp_g)
                out[j] = np.float64(d32 * d32)
            else:
                d = amp_g - amp_p
                out[j] = d * d
            j += 1
    return out


@numba.njit(cache=True, nogil=True)
def _find(parent: np.ndarray, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


_work = threading.local()


def conn_depth(level: np.ndarray, unknown_idx: np.ndarray, column_major: bool) -> np.ndarray:
    """See `_conn_depth`. Level-10 pixels (in every M_i, most of a typical image's foreground) are labelled
    once by OpenCV and enter the union-find as one node per component. The per-pixel int32 work arrays are
    kept per thread and reused: fresh pages cost more than the labelling on a 2000x2000 image."""
    h, w = level.shape
    n = h * w
    work = getattr(_work, "conn", None)
    if work is None or work.shape[1] < n:
        work = np.empty((7, n), np.int32)
        _work.conn = work
    labels = work[6, :n].reshape(h, w)
    n_core, labels = cv2.connectedComponents(cv2.compare(level, 10, cv2.CMP_EQ), labels, 4, cv2.CV_32S)
    if n < 1 << 24:  # OpenCV's float32 histogram is exact below 2**24 pixels and faster than bincount
        counts = cv2.calcHist([level], [0], None, [11], [0, 11]).ravel().astype(np.int64)
    else:
        counts = np.bincount(level.ravel(), minlength=11).astype(np.int64)
    return _conn_depth(level, labels, n_core, counts, unknown_idx, column_major, work)


@numba.njit(cache=True, nogil=True)
def _conn_depth(level: np.ndarray, labels: np.ndarray, n_core: int, counts: np.ndarray, unknown_idx: np.ndarray,
                column_major: bool, work: np.ndarray) -> np.ndarray:
    """For each unknown pixel, for how many leading thresholds it stayed in every Ω_i (l = t[depth]).

    Ω_i is the largest 4-connected component of M_i = {level ≥ i}; `counts`: pixels per level. The components
    of M_10 (`labels`, any numbering) start as union-find nodes (node = the component's first pixel in raster
    order); then pixels are switched on from level 9 down to 1 (raster order within a level) and joined to
    their switched-on neighbours, so after level i the components are exactly those of M_i. The largest one,
    ties going to the component whose first pixel comes first in the protocol's scan order (row-major:
    OpenCV's label order, column-major: MATLAB's), can only be replaced by a component that just grew, so it
    is tracked as pixels arrive. A second, uncompressed forest records every merge and its level (union by
    size: O(log n) deep); the component of p at level i is its highest ancestor joined at a level ≥ i,
    compared with Ω_i.
    """
    h, w = level.shape
    n = h * w
    flat = level.ravel()
    lab = labels.ravel()
    n_levels = 10
    parent, tparent, tlevel, size, key = work[1], work[2], work[3], work[4], work[5]  # set when switched on
    # one sweep: level-10 components (representative = first pixel in raster order, area, first pixel in
    # column-major order) and the pixels of levels 1..9 sorted by level, raster order within a level
    start = np.zeros(n_levels + 1, np.int64)  # pixels of level L sit at order[start[L]:start[L] + counts[L]]
    acc = 0
    for lv in range(n_levels - 1, 0, -1):
        start[lv] = acc
        acc += counts[lv]
    order = work[0]
    fill = start.copy()
    rep = np.full(n_core, -1, np.int64)
    area = np.zeros(n_core, np.int64)
    ckey = np.full(n_core, n, np.int64)
    for y in range(h):
        for x in range(w):
            p = y * w + x
            lv = flat[p]
            if lv == n_levels:
                c = lab[p]
                if rep[c] < 0:
                    rep[c] = p
                area[c] += 1
                if column_major:
                    ckey[c] = min(ckey[c], x * h + y)
            elif lv:
                order[fill[lv]] = p
                fill[lv] += 1
    best_size, best_key, best_root = 0, 0, -1
    for c in range(1, n_core):
        r = rep[c]
        parent[r] = r
        tparent[r] = -1
        size[r] = area[c]
        key[r] = ckey[c] if column_major else r
        if size[r] > best_size or (size[r] == best_size and key[r] < best_key):
            best_size, best_key, best_root = size[r], key[r], r
    omega = np.full(n_levels + 1, -1, np.int64)  # root of Ω_i right after level i
    omega[n_levels] = best_root
    for lv in range(n_levels - 1, 0, -1):
        y, row = 0, 0  # pixels of one level come in raster order: follow the row without dividing
        for o in range(start[lv], start[lv] + counts[lv]):
            p = order[o]
            while p >= row + w:
                row += w
                y += 1
            x = p - row
            parent[p] = p
            tparent[p] = -1
            size[p] = 1
            key[p] = x * h + y if column_major else p
            r = p  # root of p's component, kept current
            for nb in range(4):
                if nb == 0:
                    if y == 0:
                        continue
                    q = p - w
                elif nb == 1:
                    if x == 0:
                        continue
                    q = p - 1
                elif nb == 2:
                    if x == w - 1:
                        continue
                    q = p + 1
                else:
                    if y == h - 1:
                        continue
                    q = p + w
                lq = flat[q]
                if lq > lv or (lq == lv and q < p):
                    rq = _find(parent, rep[lab[q]] if lq == n_levels else q)
                    if rq != r:
                        big, small = (r, rq) if size[r] >= size[rq] else (rq, r)
                        parent[small] = big
                        tparent[small] = big
                        tlevel[small] = lv
                        size[big] += size[small]
                        key[big] = min(key[big], key[small])
                        r = big
            if size[r] > best_size or (size[r] == best_size and key[r] < best_key):
                best_size, best_key, best_root = size[r], key[r], r
        if best_root >= 0:
            best_root = _find(parent, best_root)
            omega[lv] = best_root
    depth = np.empty(unknown_idx.size, np.int64)
    core_depth = np.full(n_core, -1, np.int64)  # every pixel of a level-10 component has the same depth
    for j in range(unknown_idx.size):
        p = unknown_idx[j]
        lv = flat[p]
        if lv == n_levels and core_depth[lab[p]] >= 0:
            depth[j] = core_depth[lab[p]]
            continue
        d = lv
        node = rep[lab[p]] if lv == n_levels else p
        for i in range(lv, 0, -1):
            while tparent[node] != -1 and tlevel[node] >= i:
                node = tparent[node]
            if node != omega[i]:
                d = i - 1
        depth[j] = d
        if lv == n_levels:
            core_depth[lab[p]] = d
    return depth


@numba.njit(cache=True, nogil=True)
def conn_terms(pred: np.ndarray, gt: np.ndarray, unknown_idx: np.ndarray, depth: np.ndarray,
               phi: np.ndarray) -> np.ndarray:
    """|φ(g) − φ(p)| at every unknown pixel of uint8 maps, φ read from the (depth, alpha) table `phi`; the
    difference is taken in the table's precision (float32 for MATLAB's single), then widened."""
    p, g = pred.ravel(), gt.ravel()
    out = np.empty(unknown_idx.size, np.float64)
    for j in range(unknown_idx.size):
        q, d = unknown_idx[j], depth[j]
        out[j] = np.float64(abs(phi[d, g[q]] - phi[d, p[q]]))
    return out
