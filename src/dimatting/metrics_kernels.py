"""numba kernels behind dimatting.metrics: GRAD's restricted separable filter and CONN's one-pass union-find.

Kept apart so that `import dimatting.metrics` stays light: this module (and numba with it) is imported on the
first GRAD or CONN computation. `cache=True` stores the machine code beside this file (or in numba's user cache
when that is read-only), so only the first process on a machine pays the compile; worker processes load it.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from numba import types
from numba.extending import overload

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


_GAP = 8  # runs this close are swept as one stretch: a few unneeded values cost less than another sweep
_LANES = 8  # sweeps are rounded up to a multiple of 8 columns (whole AVX2/AVX-512 vectors): no scalar tail loop


def _exact(x):
    """A source value as an operand whose pair sums and differences are exact: in compiled code a uint8 map's
    values become integers, so the vertical pass converts one value per tap pair instead of two (the sum of
    two small integers is the same in integer and in float64 arithmetic)."""
    return x


@overload(_exact)
def _exact_compiled(x):
    if isinstance(x, types.Integer) and x.bitwidth <= 16:
        return lambda x: np.int32(x)
    return lambda x: x


@numba.njit(cache=True, nogil=True)
def _run_length(unknown_idx: np.ndarray, j: int, limit: int) -> int:
    """Length of the run of consecutive flat indices starting at entry j, at most `limit`. The indices are
    strictly increasing integers, so unknown_idx[j+k] − unknown_idx[j] = k holds exactly for k below the run's
    length: a galloping binary search reads O(log length) entries instead of every one."""
    p = unknown_idx[j]
    good, step = 1, 1  # a run of `good` entries is known
    while good + step <= limit and unknown_idx[j + good + step - 1] - p == good + step - 1:
        good += step
        step *= 2
    while step > 1:
        step //= 2
        if good + step <= limit and unknown_idx[j + good + step - 1] - p == good + step - 1:
            good += step
    return good


@numba.njit(cache=True, nogil=True)
def _row_runs(unknown_idx: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of consecutive unknown pixels within a row: columns run_lo[q]..run_hi[q]-1; row y holds the
    runs row_ptr[y]..row_ptr[y+1]-1, left to right (`unknown_idx` is sorted row-major)."""
    n_unknown = unknown_idx.size
    runs = np.empty((2, max(2 * h, 64)), np.int64)  # lo, hi; doubled when full
    row_ptr = np.zeros(h + 1, np.int64)
    n_runs, j = 0, 0
    while j < n_unknown:
        p = unknown_idx[j]
        y, x = p // w, p % w
        n = _run_length(unknown_idx, j, min(n_unknown - j, w - x))
        if n_runs == runs.shape[1]:
            more = np.empty((2, 2 * n_runs), np.int64)
            more[:, :n_runs] = runs
            runs = more
        runs[0, n_runs], runs[1, n_runs] = x, x + n
        row_ptr[y + 1] += 1
        n_runs += 1
        j += n
    for y in range(h):
        row_ptr[y + 1] += row_ptr[y]
    return row_ptr, runs[0, :n_runs], runs[1, :n_runs]


@numba.njit(cache=True, nogil=True, inline="always")
def _vertical_pass(img: np.ndarray, y: int, lo: int, hi: int, smooth: np.ndarray, deriv: np.ndarray,
                   cs: np.ndarray, cd: np.ndarray) -> None:
    """Rows y-4..y+4 of `img` (clipped to the image: the replicate border) correlated with the smoothing
    factor into cs and with the derivative factor into cd, at the columns lo..hi-1 (stored at index x+4).

    The factors are symmetric (smooth) and antisymmetric (deriv) about the centre: pairing the taps halves
    the multiplications. One slice per source row keeps the sweep plain enough for LLVM to vectorise.
    """
    last = img.shape[0] - 1
    sc, s1, s2, s3, s4 = smooth[4], smooth[5], smooth[6], smooth[7], smooth[8]  # 9 taps: _HALF == 4
    d1, d2, d3, d4 = deriv[5], deriv[6], deriv[7], deriv[8]
    m = img[y, lo:hi]
    u1, l1 = img[min(y + 1, last), lo:hi], img[max(y - 1, 0), lo:hi]
    u2, l2 = img[min(y + 2, last), lo:hi], img[max(y - 2, 0), lo:hi]
    u3, l3 = img[min(y + 3, last), lo:hi], img[max(y - 3, 0), lo:hi]
    u4, l4 = img[min(y + 4, last), lo:hi], img[max(y - 4, 0), lo:hi]
    so, do = cs[lo + _HALF:hi + _HALF], cd[lo + _HALF:hi + _HALF]
    for i in range(hi - lo):
        a1h, a1l, a2h, a2l = _exact(u1[i]), _exact(l1[i]), _exact(u2[i]), _exact(l2[i])
        a3h, a3l, a4h, a4l = _exact(u3[i]), _exact(l3[i]), _exact(u4[i]), _exact(l4[i])
        so[i] = (sc * np.float64(m[i]) + s1 * np.float64(a1h + a1l) + s2 * np.float64(a2h + a2l)
                 + s3 * np.float64(a3h + a3l) + s4 * np.float64(a4h + a4l))
        do[i] = (d1 * np.float64(a1h - a1l) + d2 * np.float64(a2h - a2l) + d3 * np.float64(a3h - a3l)
                 + d4 * np.float64(a4h - a4l))


@numba.njit(cache=True, nogil=True, inline="always")
def _magnitude(cs: np.ndarray, cd: np.ndarray, i: int, factor: float, c: tuple) -> float:
    """factor·|∇| at entry i+4 of the vertical-pass rows: fx = derivative factor along the row of cs,
    fy = smoothing factor along the row of cd; c = the factors' taps 4..8 (smooth) then 5..8 (deriv)."""
    sc, s1, s2, s3, s4, d1, d2, d3, d4 = c
    fx = (d1 * (cs[i + 5] - cs[i + 3]) + d2 * (cs[i + 6] - cs[i + 2]) + d3 * (cs[i + 7] - cs[i + 1])
          + d4 * (cs[i + 8] - cs[i]))
    fy = (sc * cd[i + 4] + s1 * (cd[i + 5] + cd[i + 3]) + s2 * (cd[i + 6] + cd[i + 2])
          + s3 * (cd[i + 7] + cd[i + 1]) + s4 * (cd[i + 8] + cd[i]))
    return factor * np.sqrt(fx * fx + fy * fy)


@numba.njit(cache=True, nogil=True, inline="always")
def _horizontal_pass(cs_p: np.ndarray, cd_p: np.ndarray, cs_g: np.ndarray, cd_g: np.ndarray, a: int, n: int,
                     factor_p: float, factor_g: float, c: tuple, single: bool, dst: np.ndarray) -> None:
    """(|∇g'| − |∇p'|)² at the columns a..a+n-1 into dst[0:n], from the vertical-pass rows of pred and gt
    (column x at index x+4). The slices start 4 columns left of a, so every index is a non-negative offset
    of the counter, and `single` is decided outside the loops: LLVM vectorises both."""
    m = n + 2 * _HALF
    pp, qp, pg, qg, o = cs_p[a:a + m], cd_p[a:a + m], cs_g[a:a + m], cd_g[a:a + m], dst[:n]
    if single:
        for i in range(n):
            d32 = np.float32(_magnitude(pp, qp, i, factor_p, c)) - np.float32(_magnitude(pg, qg, i, factor_g, c))
            o[i] = np.float64(d32 * d32)
    else:
        for i in range(n):
            d = _magnitude(pg, qg, i, factor_g, c) - _magnitude(pp, qp, i, factor_p, c)
            o[i] = d * d


@numba.njit(cache=True, nogil=True, inline="always")
def _vertical_stretch(img: np.ndarray, y: int, a: int, b: int, smooth: np.ndarray, deriv: np.ndarray,
                      cs: np.ndarray, cd: np.ndarray) -> None:
    """The vertical pass over the columns the horizontal taps of columns a..b-1 read: a-4..b+3 clipped to
    the image, rounded up to whole vectors where the row has room (extra columns get correct values); the
    4 pad entries past an image edge repeat the edge column, which is the replicate border."""
    w = img.shape[1]
    lo, hi = max(a - _HALF, 0), min(b + _HALF, w)
    n = (hi - lo + _LANES - 1) // _LANES * _LANES
    if n <= w:
        hi_v = min(lo + n, w)
        _vertical_pass(img, y, hi_v - n, hi_v, smooth, deriv, cs, cd)
    else:
        _vertical_pass(img, y, lo, hi, smooth, deriv, cs, cd)
    if lo == 0:
        cs[:_HALF], cd[:_HALF] = cs[_HALF], cd[_HALF]
    if hi == w:
        cs[w + _HALF:w + 2 * _HALF], cd[w + _HALF:w + 2 * _HALF] = cs[w + _HALF - 1], cd[w + _HALF - 1]


@numba.njit(cache=True, nogil=True)
def grad_terms(pred: np.ndarray, gt: np.ndarray, unknown_idx: np.ndarray, factor_p: float, factor_g: float,
               smooth: np.ndarray, deriv: np.ndarray, single: bool) -> np.ndarray:
    """(|∇g'| − |∇p'|)² at every unknown pixel, in row-major order (x' = factor·x + shift, the min-max map).

    The 9x9 kernel is rank one, so each map is filtered by a vertical pass (9 taps over rows y-4..y+4) then
    a horizontal pass (9 taps along the row), only where unknown pixels read it: per row, over stretches of
    its runs of unknown pixels (runs closer than _GAP share one). Working row by row keeps what a row needs
    in L1: nine source rows of bytes and a few rows of float64 partial sums, where a horizontal-first order
    keeps a ring of nine filtered float64 rows per map, which spills to L2. The shift of the normalisation
    drops out of a derivative, so raw values are filtered and the magnitude is scaled by `factor`.
    `single`: MATLAB's (single(a) − single(b))².
    """
    h, w = pred.shape
    out = np.empty(unknown_idx.size + _LANES, np.float64)  # slack for the last run's rounding
    row_ptr, run_lo, run_hi = _row_runs(unknown_idx, h, w)
    size = w + 2 * _HALF + _LANES  # column x at index x + 4; 4 pads each side, then slack for rounding up
    cs_p, cd_p, cs_g, cd_g = np.zeros(size), np.zeros(size), np.zeros(size), np.zeros(size)
    c = (smooth[4], smooth[5], smooth[6], smooth[7], smooth[8], deriv[5], deriv[6], deriv[7], deriv[8])
    j = 0
    for y in range(h):
        q, q_end = row_ptr[y], row_ptr[y + 1]
        while q < q_end:
            a, b = run_lo[q], run_hi[q]
            q_next = q + 1
            while q_next < q_end and run_lo[q_next] <= b + _GAP:
                b = run_hi[q_next]
                q_next += 1
            _vertical_stretch(pred, y, a, b, smooth, deriv, cs_p, cd_p)
            _vertical_stretch(gt, y, a, b, smooth, deriv, cs_g, cd_g)
            for qq in range(q, q_next):  # each run straight into out, rounded up to whole vectors: the
                a, n = run_lo[qq], run_hi[qq] - run_lo[qq]  # extra terms land where later runs' go (or in
                n_up = (n + _LANES - 1) // _LANES * _LANES  # the slack), and are overwritten
                _horizontal_pass(cs_p, cd_p, cs_g, cd_g, a, n_up, factor_p, factor_g, c, single, out[j:])
                j += n
            q = q_next
    return out[:unknown_idx.size]


@numba.njit(cache=True, nogil=True)
def conn_levels(pred: np.ndarray, gt: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """CONN's level of uint8 maps: how many of the ten cuts min(p, g) reaches (cuts[k]: the least uint8 alpha
    that passes threshold k+1). Ten compares instead of a table look-up: LLVM vectorises the compares over
    many pixels at once, where a look-up (cv2.LUT) goes pixel by pixel, ~7x slower at 2000x2000."""
    p, g = pred.ravel(), gt.ravel()
    out = np.empty(p.size, np.uint8)
    for i in range(p.size):
        v = min(p[i], g[i])
        count = np.uint8(0)
        for k in range(10):
            count += np.uint8(v >= cuts[k])
        out[i] = count
    return out.reshape(pred.shape)


@numba.njit(cache=True, nogil=True)
def _find(parent: np.ndarray, x: int) -> int:
    """Root of x, halving the path on the way (both union-finds below)."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@numba.njit(cache=True, nogil=True, inline="always")
def _run_at(row_ptr: np.ndarray, run_x0: np.ndarray, y: int, x: int) -> int:
    """The level-10 run of row y that holds column x (x is a level-10 pixel): the last run starting at or
    before x, by binary search over the row's runs (sorted by column)."""
    lo, hi = row_ptr[y], row_ptr[y + 1] - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if run_x0[mid] <= x:
            lo = mid
        else:
            hi = mid - 1
    return lo


_work = threading.local()
_ROWS = 12  # int32 work rows of conn_depth, one pixel count long each
# eight level-0 / level-10 bytes read as one uint64 (typed: numba compares uint64 with int64 in float64)
_ZEROS, _TENS = np.uint64(0), np.uint64(0x0A0A0A0A0A0A0A0A)


def conn_depth(level: np.ndarray, unknown_idx: np.ndarray, column_major: bool) -> np.ndarray:
    """See `_conn_depth`. The int32 work rows are kept per thread and reused: fresh pages cost more than the
    whole computation on a 2000x2000 image, and only the part a call uses is ever touched."""
    h, w = level.shape
    n = h * w
    work = getattr(_work, "conn", None)
    if work is None or work.shape[1] < n:
        work = np.empty((_ROWS, n), np.int32)
        _work.conn = work
    return _conn_depth(level, unknown_idx, column_major, work)


@numba.njit(cache=True, nogil=True)
def _conn_depth(level: np.ndarray, unknown_idx: np.ndarray, column_major: bool, work: np.ndarray) -> np.ndarray:
    """For each unknown pixel, for how many leading thresholds it stayed in every Ω_i (l = t[depth]).

    Ω_i is the largest 4-connected component of M_i = {level ≥ i}. One sweep over the level bytes finds the
    runs of level-10 pixels (in every M_i; most of a typical foreground) row by row, joining each run to the
    runs it touches in the row above (a union-find over runs: the components of M_10 for the price of reading
    the bytes once), and lists the pixels of levels 1..9 in raster order. The union-find proper starts from
    one node per M_10 component; pixels are switched on from level 9 down to 1 (raster order within a level)
    and joined to their switched-on neighbours, so after level i the components are exactly those of M_i.
    Its nodes are numbered compactly (runs, then listed pixels), so its arrays stay in cache; a pixel's
    level-10 neighbour is found by binary search among its row's runs. The sweep skips eight bytes at a time
    where all are 0 or 10 (most of an image), read as one uint64. The largest
    component, ties going to the component whose first pixel comes first in the protocol's scan order
    (row-major: OpenCV's label order, column-major: MATLAB's), can only be replaced by a component that just
    grew, so it is tracked as pixels arrive. A second, uncompressed forest records every merge and its level
    (union by size: O(log n) deep); the component of p at level i is its highest ancestor joined at a level
    ≥ i, compared with Ω_i.
    """
    h, w = level.shape
    n_levels = 10
    flat = level.ravel()
    words = flat[:flat.size - flat.size % 8].view(np.uint64)  # 8 levels at a time where all are 0 or 10
    for j in range(unknown_idx.size):  # typically ends at once
        if flat[unknown_idx[j]]:
            break
    else:  # no unknown pixel in M_1 (in no Ω): every depth is 0
        return np.zeros(unknown_idx.size, np.uint8)
    nid, listed, order = work[0], work[1], work[2]  # nid[p]: a listed pixel's index in `order`
    run_y, run_x0, run_x1, run_root = work[3], work[4], work[5], work[6]
    counts = np.zeros(n_levels + 1, np.int64)
    row_ptr = np.zeros(h + 1, np.int64)  # runs of row y: row_ptr[y]..row_ptr[y+1]-1, left to right
    n_runs, n_listed = 0, 0
    for y in range(h):
        base, x = y * w, 0
        while x < w:
            lv = flat[base + x]
            if lv == n_levels:
                x0 = x
                while x < w and flat[base + x] == n_levels:
                    x += 1
                    while ((base + x) & 7) == 0 and x + 8 <= w and words[(base + x) >> 3] == _TENS:
                        x += 8
                run_y[n_runs], run_x0[n_runs], run_x1[n_runs], run_root[n_runs] = y, x0, x, n_runs
                n_runs += 1
                continue
            if lv:
                listed[n_listed] = base + x
                n_listed += 1
                counts[lv] += 1
            x += 1
            if lv == 0:
                while ((base + x) & 7) == 0 and x + 8 <= w and words[(base + x) >> 3] == _ZEROS:
                    x += 8
        row_ptr[y + 1] = n_runs
        if y:  # join this row's runs to the overlapping runs of the row above (the root: the earliest run)
            i, j = row_ptr[y - 1], row_ptr[y]
            while i < row_ptr[y] and j < n_runs:
                if run_x0[i] < run_x1[j] and run_x0[j] < run_x1[i]:
                    a, b = _find(run_root, i), _find(run_root, j)
                    if a != b:
                        run_root[max(a, b)] = min(a, b)
                if run_x1[i] <= run_x1[j]:
                    i += 1
                else:
                    j += 1
    # levels 1..9 sorted by level (9 first), raster order within a level: pixels of level L sit at
    # order[start[L]:start[L] + counts[L]]
    start = np.zeros(n_levels + 1, np.int64)
    acc = 0
    for lv in range(n_levels - 1, 0, -1):
        start[lv] = acc
        acc += counts[lv]
    fill = start.copy()
    for k in range(n_listed):
        p = listed[k]
        o = fill[flat[p]]
        order[o] = p
        nid[p] = o
        fill[flat[p]] += 1
    # nodes: runs 0..n_runs-1 (only each M_10 component's root run is used), listed pixels n_runs + index
    n_nodes = n_runs + n_listed
    parent, tparent, tlevel, size, key = (work[7, :n_nodes], work[8, :n_nodes], work[9, :n_nodes],
                                          work[10, :n_nodes], work[11, :n_nodes])
    for r in range(n_runs):  # roots are the earliest run, so run_root[r] <= r: one pass resolves them all
        root = run_root[run_root[r]]
        run_root[r] = root
        if root == r:
            parent[r], tparent[r], size[r] = r, -1, 0
            key[r] = run_x0[r] * h + run_y[r] if column_major else run_y[r] * w + run_x0[r]
        size[root] += run_x1[r] - run_x0[r]
        if column_major:
            key[root] = min(key[root], run_x0[r] * h + run_y[r])
    best_size, best_key, best_root = 0, 0, -1
    for r in range(n_runs):
        if run_root[r] == r and (size[r] > best_size or (size[r] == best_size and key[r] < best_key)):
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
            u = n_runs + o
            parent[u] = u
            tparent[u] = -1
            size[u] = 1
            key[u] = x * h + y if column_major else p
            r = u  # root of u's component, kept current
            for nb in range(4):
                if nb == 0:
                    if y == 0:
                        continue
                    q, yq, xq = p - w, y - 1, x
                elif nb == 1:
                    if x == 0:
                        continue
                    q, yq, xq = p - 1, y, x - 1
                elif nb == 2:
                    if x == w - 1:
                        continue
                    q, yq, xq = p + 1, y, x + 1
                else:
                    if y == h - 1:
                        continue
                    q, yq, xq = p + w, y + 1, x
                lq = flat[q]
                if lq > lv or (lq == lv and q < p):
                    v = run_root[_run_at(row_ptr, run_x0, yq, xq)] if lq == n_levels else n_runs + nid[q]
                    rq = _find(parent, v)
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
    depth = np.empty(unknown_idx.size, np.uint8)  # 0..10; a small array is also quicker to read back
    core_depth = np.full(n_runs, -1, np.int64)  # every pixel of an M_10 component has the same depth
    y, row, run = 0, 0, -1
    for j in range(unknown_idx.size):
        p = unknown_idx[j]
        lv = flat[p]
        if lv == 0:
            depth[j] = 0
            continue
        if lv == n_levels:
            while p >= row + w:  # unknown_idx is sorted row-major
                row += w
                y += 1
            x = p - row
            if run < 0 or run_y[run] != y or not run_x0[run] <= x < run_x1[run]:  # else: still the last run
                run = _run_at(row_ptr, run_x0, y, x)
            node = run_root[run]
            if core_depth[node] >= 0:
                depth[j] = core_depth[node]
                continue
        else:
            node = n_runs + nid[p]
        d = lv
        first = node
        for i in range(lv, 0, -1):
            while tparent[node] != -1 and tlevel[node] >= i:
                node = tparent[node]
            if node != omega[i]:
                d = i - 1
        depth[j] = d
        if lv == n_levels:
            core_depth[first] = d
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
