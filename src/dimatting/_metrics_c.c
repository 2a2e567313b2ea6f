/* Compiled kernels behind dimatting.metrics (GRAD's restricted separable filter, CONN's one-pass union-find).
 *
 * Built by setuptools when the package is installed (`pip install -e .`), so a process loads them in about a
 * millisecond: no JIT, no compile cache to read. dimatting/metrics_kernels.py wraps them (argument checks,
 * output allocation, the reasons behind each algorithm); this file only computes. Arrays come in through the
 * buffer protocol (C-contiguous, format checked), so no NumPy headers are needed to build it.
 *
 * Floating point: every sum is written in the order of the documented formula and the build turns off FMA
 * contraction (-ffp-contract=off), so results are the same bits on every x86-64 CPU, with or without AVX2.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HALF 4     /* half size of the 9-tap derivative-of-Gaussian factors */
#define GAP 8      /* runs this close are swept as one stretch */
#define N_LEVELS 10
#define ROWS 12    /* int32 work rows of conn_depth */

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

/* ---------------------------------------------------------------------------------------- buffers */
typedef struct {
    Py_buffer view;
    int held;
} Buf;

static void release(Buf *b) {
    if (b->held) PyBuffer_Release(&b->view);
    b->held = 0;
}

/* A C-contiguous buffer of one of the item formats in `formats` ("B", "d", "f", "q", "i"), `ndim` dims. */
static int get_buf(PyObject *obj, Buf *b, const char *formats, int ndim, int writable, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0) return -1;
    b->held = 1;
    const char *f = b->view.format ? b->view.format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    char code = f[0];
    if (code == 'l' && b->view.itemsize == 8) code = 'q';  /* int64 is 'l' on LP64 */
    if (f[0] == '\0' || f[1] != '\0' || strchr(formats, code) == NULL || b->view.ndim != ndim) {
        PyErr_Format(PyExc_TypeError, "%s: unexpected array type (format %s, %d dims)", what, b->view.format,
                     b->view.ndim);
        release(b);
        return -1;
    }
    return 0;
}

static char fmt(const Buf *b) {
    const char *f = b->view.format ? b->view.format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    return (f[0] == 'l' && b->view.itemsize == 8) ? 'q' : f[0];
}

/* ------------------------------------------------------------------------------------ scan_trimap */
/* (stray, bad, unknown indices as int64 bytes): pixels outside {0, 128, 255}, known pixels whose prediction
 * is not 0 / `full`, and the flat indices of the unknown (128) pixels in row-major order. */
static PyObject *scan_trimap(PyObject *self, PyObject *args) {
    PyObject *po, *to;
    double full;
    Buf p = {0}, t = {0};
    if (!PyArg_ParseTuple(args, "OOd", &po, &to, &full)) return NULL;
    if (get_buf(po, &p, "Bd", 2, 0, "prediction") < 0) return NULL;
    if (get_buf(to, &t, "B", 2, 0, "trimap") < 0) { release(&p); return NULL; }
    const uint8_t *tri = t.view.buf;
    Py_ssize_t n = t.view.len, stray = 0, bad = 0, n_unknown = 0;
    int is_float = fmt(&p) == 'd';
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t v = tri[i];
        double pv = is_float ? ((const double *)p.view.buf)[i] : (double)((const uint8_t *)p.view.buf)[i];
        if (v == 128) n_unknown++;
        else if (v == 0) bad += pv != 0;
        else if (v == 255) bad += pv != full;
        else stray++;
    }
    Py_END_ALLOW_THREADS
    PyObject *idx = PyBytes_FromStringAndSize(NULL, n_unknown * (Py_ssize_t)sizeof(int64_t));
    if (idx != NULL) {
        int64_t *out = (int64_t *)PyBytes_AS_STRING(idx);
        Py_ssize_t j = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            if (tri[i] == 128) out[j++] = i;
    }
    release(&p);
    release(&t);
    if (idx == NULL) return NULL;
    return Py_BuildValue("nnN", stray, bad, idx);
}

/* ------------------------------------------------------------------------------------------- GRAD */
/* Length of the run of consecutive flat indices starting at entry j, at most `limit` (galloping search). */
static int64_t run_length(const int64_t *idx, int64_t j, int64_t limit) {
    int64_t p = idx[j], good = 1, step = 1;
    while (good + step <= limit && idx[j + good + step - 1] - p == good + step - 1) {
        good += step;
        step *= 2;
    }
    while (step > 1) {
        step /= 2;
        if (good + step <= limit && idx[j + good + step - 1] - p == good + step - 1) good += step;
    }
    return good;
}

/* Runs of consecutive unknown pixels within a row: columns lo[q]..hi[q]-1; row y holds runs
 * row_ptr[y]..row_ptr[y+1]-1. Returns the number of runs, or -1 when out of memory. */
static int64_t row_runs(const int64_t *idx, int64_t n_unknown, int64_t h, int64_t w, int64_t *row_ptr,
                        int64_t **lo_out, int64_t **hi_out) {
    int64_t cap = 2 * h > 64 ? 2 * h : 64, n_runs = 0, j = 0;
    int64_t *lo = malloc(cap * sizeof(int64_t)), *hi = malloc(cap * sizeof(int64_t));
    if (!lo || !hi) { free(lo); free(hi); return -1; }
    memset(row_ptr, 0, (h + 1) * sizeof(int64_t));
    while (j < n_unknown) {
        int64_t p = idx[j], y = p / w, x = p % w;
        int64_t lim = n_unknown - j < w - x ? n_unknown - j : w - x;
        int64_t n = run_length(idx, j, lim);
        if (n_runs == cap) {
            cap *= 2;
            int64_t *lo2 = realloc(lo, cap * sizeof(int64_t));
            if (lo2) lo = lo2;
            int64_t *hi2 = realloc(hi, cap * sizeof(int64_t));
            if (hi2) hi = hi2;
            if (!lo2 || !hi2) { free(lo); free(hi); return -1; }
        }
        lo[n_runs] = x;
        hi[n_runs] = x + n;
        row_ptr[y + 1]++;
        n_runs++;
        j += n;
    }
    for (int64_t y = 0; y < h; y++) row_ptr[y + 1] += row_ptr[y];
    *lo_out = lo;
    *hi_out = hi;
    return n_runs;
}

typedef struct {
    double sc, s1, s2, s3, s4, d1, d2, d3, d4;
} Taps;

/* Rows y-4..y+4 of a uint8 map (clipped: the replicate border) through the smoothing and derivative factors
 * at columns lo..hi-1, stored at index x+4. Pair sums of uint8 values are exact in int. */
HOT static void vertical_u8(const uint8_t *img, int64_t h, int64_t w, int64_t y, int64_t lo, int64_t hi,
                            const Taps *c, double *cs, double *cd) {
    int64_t last = h - 1;
    const uint8_t *m = img + y * w;
    const uint8_t *u1 = img + (y + 1 < last ? y + 1 : last) * w, *l1 = img + (y - 1 > 0 ? y - 1 : 0) * w;
    const uint8_t *u2 = img + (y + 2 < last ? y + 2 : last) * w, *l2 = img + (y - 2 > 0 ? y - 2 : 0) * w;
    const uint8_t *u3 = img + (y + 3 < last ? y + 3 : last) * w, *l3 = img + (y - 3 > 0 ? y - 3 : 0) * w;
    const uint8_t *u4 = img + (y + 4 < last ? y + 4 : last) * w, *l4 = img + (y - 4 > 0 ? y - 4 : 0) * w;
    const double sc = c->sc, s1 = c->s1, s2 = c->s2, s3 = c->s3, s4 = c->s4;
    const double d1 = c->d1, d2 = c->d2, d3 = c->d3, d4 = c->d4;
    for (int64_t x = lo; x < hi; x++) {
        int a1h = u1[x], a1l = l1[x], a2h = u2[x], a2l = l2[x], a3h = u3[x], a3l = l3[x], a4h = u4[x], a4l = l4[x];
        cs[x + HALF] = sc * (double)m[x] + s1 * (double)(a1h + a1l) + s2 * (double)(a2h + a2l)
                       + s3 * (double)(a3h + a3l) + s4 * (double)(a4h + a4l);
        cd[x + HALF] = d1 * (double)(a1h - a1l) + d2 * (double)(a2h - a2l) + d3 * (double)(a3h - a3l)
                       + d4 * (double)(a4h - a4l);
    }
}

/* The same for a float64 map (pair sums in float64). */
HOT static void vertical_f64(const double *img, int64_t h, int64_t w, int64_t y, int64_t lo, int64_t hi,
                             const Taps *c, double *cs, double *cd) {
    int64_t last = h - 1;
    const double *m = img + y * w;
    const double *u1 = img + (y + 1 < last ? y + 1 : last) * w, *l1 = img + (y - 1 > 0 ? y - 1 : 0) * w;
    const double *u2 = img + (y + 2 < last ? y + 2 : last) * w, *l2 = img + (y - 2 > 0 ? y - 2 : 0) * w;
    const double *u3 = img + (y + 3 < last ? y + 3 : last) * w, *l3 = img + (y - 3 > 0 ? y - 3 : 0) * w;
    const double *u4 = img + (y + 4 < last ? y + 4 : last) * w, *l4 = img + (y - 4 > 0 ? y - 4 : 0) * w;
    const double sc = c->sc, s1 = c->s1, s2 = c->s2, s3 = c->s3, s4 = c->s4;
    const double d1 = c->d1, d2 = c->d2, d3 = c->d3, d4 = c->d4;
    for (int64_t x = lo; x < hi; x++) {
        double a1h = u1[x], a1l = l1[x], a2h = u2[x], a2l = l2[x], a3h = u3[x], a3l = l3[x], a4h = u4[x], a4l = l4[x];
        cs[x + HALF] = sc * m[x] + s1 * (a1h + a1l) + s2 * (a2h + a2l) + s3 * (a3h + a3l) + s4 * (a4h + a4l);
        cd[x + HALF] = d1 * (a1h - a1l) + d2 * (a2h - a2l) + d3 * (a3h - a3l) + d4 * (a4h - a4l);
    }
}

/* The vertical pass over the columns that the horizontal taps of columns a..b-1 read (a-4..b+3 clipped);
 * the 4 pad entries past an image edge repeat the edge column (the replicate border). */
static void vertical_stretch(const void *img, int is_float, int64_t h, int64_t w, int64_t y, int64_t a, int64_t b,
                             const Taps *c, double *cs, double *cd) {
    int64_t lo = a - HALF > 0 ? a - HALF : 0, hi = b + HALF < w ? b + HALF : w;
    if (is_float) vertical_f64(img, h, w, y, lo, hi, c, cs, cd);
    else vertical_u8(img, h, w, y, lo, hi, c, cs, cd);
    if (lo == 0)
        for (int k = 0; k < HALF; k++) { cs[k] = cs[HALF]; cd[k] = cd[HALF]; }
    if (hi == w)
        for (int k = 0; k < HALF; k++) { cs[w + HALF + k] = cs[w + HALF - 1]; cd[w + HALF + k] = cd[w + HALF - 1]; }
}

/* factor·|∇| at entry i+4: fx = derivative factor along the row of cs, fy = smoothing factor along cd. */
static inline double magnitude(const double *cs, const double *cd, int64_t i, double factor, const Taps *c) {
    double fx = c->d1 * (cs[i + 5] - cs[i + 3]) + c->d2 * (cs[i + 6] - cs[i + 2]) + c->d3 * (cs[i + 7] - cs[i + 1])
                + c->d4 * (cs[i + 8] - cs[i]);
    double fy = c->sc * cd[i + 4] + c->s1 * (cd[i + 5] + cd[i + 3]) + c->s2 * (cd[i + 6] + cd[i + 2])
                + c->s3 * (cd[i + 7] + cd[i + 1]) + c->s4 * (cd[i + 8] + cd[i]);
    return factor * sqrt(fx * fx + fy * fy);
}

/* (|∇g'| − |∇p'|)² at columns a..a+n-1 into dst (MATLAB's single difference when `single`). */
HOT static void horizontal(const double *cs_p, const double *cd_p, const double *cs_g, const double *cd_g,
                           int64_t a, int64_t n, double fp, double fg, const Taps *c, int single, double *dst) {
    const double *pp = cs_p + a, *qp = cd_p + a, *pg = cs_g + a, *qg = cd_g + a;
    if (single) {
        for (int64_t i = 0; i < n; i++) {
            float d32 = (float)magnitude(pp, qp, i, fp, c) - (float)magnitude(pg, qg, i, fg, c);
            dst[i] = (double)(d32 * d32);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            double d = magnitude(pg, qg, i, fg, c) - magnitude(pp, qp, i, fp, c);
            dst[i] = d * d;
        }
    }
}

static int grad_compute(const void *pred, int pred_float, const uint8_t *gt, int64_t h, int64_t w,
                        const int64_t *idx, int64_t n_unknown, double fp, double fg, const Taps *c, int single,
                        double *out) {
    int64_t *row_ptr = malloc((h + 1) * sizeof(int64_t)), *run_lo = NULL, *run_hi = NULL;
    int64_t size = w + 2 * HALF;
    double *rows = calloc(4 * size, sizeof(double));
    if (!row_ptr || !rows) { free(row_ptr); free(rows); return -1; }
    if (row_runs(idx, n_unknown, h, w, row_ptr, &run_lo, &run_hi) < 0) { free(row_ptr); free(rows); return -1; }
    double *cs_p = rows, *cd_p = rows + size, *cs_g = rows + 2 * size, *cd_g = rows + 3 * size;
    int64_t j = 0;
    for (int64_t y = 0; y < h; y++) {
        int64_t q = row_ptr[y], q_end = row_ptr[y + 1];
        while (q < q_end) {
            int64_t a = run_lo[q], b = run_hi[q], q_next = q + 1;
            while (q_next < q_end && run_lo[q_next] <= b + GAP) b = run_hi[q_next++];
            vertical_stretch(pred, pred_float, h, w, y, a, b, c, cs_p, cd_p);
            vertical_stretch(gt, 0, h, w, y, a, b, c, cs_g, cd_g);
            for (int64_t qq = q; qq < q_next; qq++) {
                int64_t n = run_hi[qq] - run_lo[qq];
                horizontal(cs_p, cd_p, cs_g, cd_g, run_lo[qq], n, fp, fg, c, single, out + j);
                j += n;
            }
            q = q_next;
        }
    }
    free(row_ptr);
    free(rows);
    free(run_lo);
    free(run_hi);
    return 0;
}

/* grad_terms(pred, gt, unknown_idx, factor_p, factor_g, smooth, deriv, single, out) */
static PyObject *grad_terms(PyObject *self, PyObject *args) {
    PyObject *po, *go, *io, *so, *dob, *oo;
    double fp, fg;
    int single;
    Buf p = {0}, g = {0}, ix = {0}, s = {0}, d = {0}, o = {0};
    if (!PyArg_ParseTuple(args, "OOOddOOpO", &po, &go, &io, &fp, &fg, &so, &dob, &single, &oo)) return NULL;
    PyObject *result = NULL;
    if (get_buf(po, &p, "Bd", 2, 0, "prediction") < 0 || get_buf(go, &g, "B", 2, 0, "GT alpha") < 0
        || get_buf(io, &ix, "q", 1, 0, "unknown_idx") < 0 || get_buf(so, &s, "d", 1, 0, "smooth") < 0
        || get_buf(dob, &d, "d", 1, 0, "deriv") < 0 || get_buf(oo, &o, "d", 1, 1, "out") < 0)
        goto done;
    int64_t h = p.view.shape[0], w = p.view.shape[1], n_unknown = ix.view.shape[0];
    if (g.view.shape[0] != h || g.view.shape[1] != w || s.view.shape[0] != 2 * HALF + 1
        || d.view.shape[0] != 2 * HALF + 1 || o.view.shape[0] != n_unknown) {
        PyErr_SetString(PyExc_ValueError, "grad_terms: array sizes do not match");
        goto done;
    }
    const double *sm = s.view.buf, *dv = d.view.buf;
    Taps c = {sm[4], sm[5], sm[6], sm[7], sm[8], dv[5], dv[6], dv[7], dv[8]};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = grad_compute(p.view.buf, fmt(&p) == 'd', g.view.buf, h, w, ix.view.buf, n_unknown, fp, fg, &c, single,
                      o.view.buf);
    Py_END_ALLOW_THREADS
    if (rc < 0) PyErr_NoMemory();
    else result = Py_NewRef(Py_None);
done:
    release(&p); release(&g); release(&ix); release(&s); release(&d); release(&o);
    return result;
}

/* ------------------------------------------------------------------------------------------- CONN */
/* conn_levels(pred, gt, cuts, out): how many of the ten cuts min(p, g) reaches, per pixel. */
HOT static void levels(const uint8_t *p, const uint8_t *g, const uint8_t *cuts, uint8_t *out, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t v = p[i] < g[i] ? p[i] : g[i], count = 0;
        for (int k = 0; k < N_LEVELS; k++) count += v >= cuts[k];
        out[i] = count;
    }
}

static PyObject *conn_levels(PyObject *self, PyObject *args) {
    PyObject *po, *go, *co, *oo;
    Buf p = {0}, g = {0}, c = {0}, o = {0};
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOO", &po, &go, &co, &oo)) return NULL;
    if (get_buf(po, &p, "B", 2, 0, "prediction") < 0 || get_buf(go, &g, "B", 2, 0, "GT alpha") < 0
        || get_buf(co, &c, "B", 1, 0, "cuts") < 0 || get_buf(oo, &o, "B", 2, 1, "out") < 0)
        goto done;
    if (g.view.len != p.view.len || o.view.len != p.view.len || c.view.len != N_LEVELS) {
        PyErr_SetString(PyExc_ValueError, "conn_levels: array sizes do not match");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    levels(p.view.buf, g.view.buf, c.view.buf, o.view.buf, p.view.len);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release(&p); release(&g); release(&c); release(&o);
    return result;
}

/* Root of x, halving the path on the way. */
static inline int32_t find(int32_t *parent, int32_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

/* The level-10 run of row y that holds column x: the last run starting at or before x (binary search). */
static inline int64_t run_at(const int64_t *row_ptr, const int32_t *run_x0, int64_t y, int64_t x) {
    int64_t lo = row_ptr[y], hi = row_ptr[y + 1] - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (run_x0[mid] <= x) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static inline uint64_t word_at(const uint8_t *flat, int64_t i) {
    uint64_t v;
    memcpy(&v, flat + i, 8);
    return v;
}

typedef struct {
    const uint8_t *flat;
    int64_t h, w;
    int32_t *nid, *listed, *order, *run_y, *run_x0, *run_x1, *run_root;
    int64_t *row_ptr, n_runs, n_listed, counts[N_LEVELS + 1];
} Sweep;

/* One sweep over the level bytes: runs of level-10 pixels (joined to the overlapping runs of the row above
 * in a union-find over runs) and the pixels of levels 1..9 listed in raster order. Skips 8 bytes at a time
 * where all are 0 or 10. */
static void sweep_levels(Sweep *s) {
    const uint8_t *flat = s->flat;
    const uint64_t zeros = 0, tens = 0x0A0A0A0A0A0A0A0AULL;
    int64_t h = s->h, w = s->w, n_runs = 0, n_listed = 0, total = h * w, whole = total - total % 8;
    memset(s->counts, 0, sizeof(s->counts));
    s->row_ptr[0] = 0;
    for (int64_t y = 0; y < h; y++) {
        int64_t base = y * w, x = 0;
        while (x < w) {
            uint8_t lv = flat[base + x];
            if (lv == N_LEVELS) {
                int64_t x0 = x;
                while (x < w && flat[base + x] == N_LEVELS) {
                    x++;
                    while (((base + x) & 7) == 0 && x + 8 <= w && base + x + 8 <= whole
                           && word_at(flat, base + x) == tens)
                        x += 8;
                }
                s->run_y[n_runs] = (int32_t)y;
                s->run_x0[n_runs] = (int32_t)x0;
                s->run_x1[n_runs] = (int32_t)x;
                s->run_root[n_runs] = (int32_t)n_runs;
                n_runs++;
                continue;
            }
            if (lv) {
                s->listed[n_listed++] = (int32_t)(base + x);
                s->counts[lv]++;
            }
            x++;
            if (lv == 0)
                while (((base + x) & 7) == 0 && x + 8 <= w && base + x + 8 <= whole && word_at(flat, base + x) == zeros)
                    x += 8;
        }
        s->row_ptr[y + 1] = n_runs;
        if (y) {
            int64_t i = s->row_ptr[y - 1], j = s->row_ptr[y];
            while (i < s->row_ptr[y] && j < n_runs) {
                if (s->run_x0[i] < s->run_x1[j] && s->run_x0[j] < s->run_x1[i]) {
                    int32_t a = find(s->run_root, (int32_t)i), b = find(s->run_root, (int32_t)j);
                    if (a != b) s->run_root[a > b ? a : b] = a < b ? a : b;
                }
                if (s->run_x1[i] <= s->run_x1[j]) i++;
                else j++;
            }
        }
    }
    s->n_runs = n_runs;
    s->n_listed = n_listed;
}

/* The depth computation of metrics_kernels.conn_depth (see its docstring). */
static int depth_compute(const uint8_t *flat, int64_t h, int64_t w, const int64_t *idx, int64_t n_unknown,
                         int column_major, int32_t *work, int64_t stride, uint8_t *depth) {
    int64_t j;
    for (j = 0; j < n_unknown; j++)
        if (flat[idx[j]]) break;
    if (j == n_unknown) {  /* no unknown pixel in M_1 (in no Ω): every depth is 0 */
        memset(depth, 0, n_unknown);
        return 0;
    }
    Sweep s = {flat, h, w, work, work + stride, work + 2 * stride, work + 3 * stride, work + 4 * stride,
               work + 5 * stride, work + 6 * stride, NULL, 0, 0, {0}};
    s.row_ptr = malloc((h + 1) * sizeof(int64_t));
    if (!s.row_ptr) return -1;
    sweep_levels(&s);
    int64_t n_runs = s.n_runs, n_listed = s.n_listed;
    int32_t *nid = s.nid, *order = s.order, *run_root = s.run_root, *run_x0 = s.run_x0, *run_x1 = s.run_x1;
    int32_t *run_y = s.run_y;
    int64_t start[N_LEVELS + 1] = {0}, fill[N_LEVELS + 1], acc = 0;
    for (int lv = N_LEVELS - 1; lv > 0; lv--) {
        start[lv] = acc;
        acc += s.counts[lv];
    }
    memcpy(fill, start, sizeof(start));
    for (int64_t k = 0; k < n_listed; k++) {
        int32_t p = s.listed[k];
        int64_t o = fill[flat[p]]++;
        order[o] = p;
        nid[p] = (int32_t)o;
    }
    int32_t *parent = work + 7 * stride, *tparent = work + 8 * stride, *tlevel = work + 9 * stride;
    int32_t *size = work + 10 * stride, *key = work + 11 * stride;
    for (int64_t r = 0; r < n_runs; r++) {  /* roots are the earliest run: one pass resolves them all */
        int32_t root = run_root[run_root[r]];
        run_root[r] = root;
        if (root == r) {
            parent[r] = (int32_t)r;
            tparent[r] = -1;
            size[r] = 0;
            key[r] = column_major ? run_x0[r] * (int32_t)h + run_y[r] : run_y[r] * (int32_t)w + run_x0[r];
        }
        size[root] += run_x1[r] - run_x0[r];
        if (column_major) {
            int32_t k = run_x0[r] * (int32_t)h + run_y[r];
            if (k < key[root]) key[root] = k;
        }
    }
    int64_t best_size = 0, best_key = 0, best_root = -1;
    for (int64_t r = 0; r < n_runs; r++)
        if (run_root[r] == r && (size[r] > best_size || (size[r] == best_size && key[r] < best_key))) {
            best_size = size[r];
            best_key = key[r];
            best_root = r;
        }
    int64_t omega[N_LEVELS + 1];
    for (int k = 0; k <= N_LEVELS; k++) omega[k] = -1;
    omega[N_LEVELS] = best_root;
    for (int lv = N_LEVELS - 1; lv > 0; lv--) {
        int64_t y = 0, row = 0;
        for (int64_t o = start[lv]; o < start[lv] + s.counts[lv]; o++) {
            int64_t p = order[o];
            while (p >= row + w) { row += w; y++; }
            int64_t x = p - row;
            int32_t u = (int32_t)(n_runs + o);
            parent[u] = u;
            tparent[u] = -1;
            size[u] = 1;
            key[u] = (int32_t)(column_major ? x * h + y : p);
            int32_t r = u;
            for (int nb = 0; nb < 4; nb++) {
                int64_t q, yq, xq;
                if (nb == 0) { if (y == 0) continue; q = p - w; yq = y - 1; xq = x; }
                else if (nb == 1) { if (x == 0) continue; q = p - 1; yq = y; xq = x - 1; }
                else if (nb == 2) { if (x == w - 1) continue; q = p + 1; yq = y; xq = x + 1; }
                else { if (y == h - 1) continue; q = p + w; yq = y + 1; xq = x; }
                uint8_t lq = flat[q];
                if (lq > lv || (lq == lv && q < p)) {
                    int32_t v = lq == N_LEVELS ? run_root[run_at(s.row_ptr, run_x0, yq, xq)] : (int32_t)(n_runs + nid[q]);
                    int32_t rq = find(parent, v);
                    if (rq != r) {
                        int32_t big = size[r] >= size[rq] ? r : rq, small = size[r] >= size[rq] ? rq : r;
                        parent[small] = big;
                        tparent[small] = big;
                        tlevel[small] = lv;
                        size[big] += size[small];
                        if (key[small] < key[big]) key[big] = key[small];
                        r = big;
                    }
                }
            }
            if (size[r] > best_size || (size[r] == best_size && key[r] < best_key)) {
                best_size = size[r];
                best_key = key[r];
                best_root = r;
            }
        }
        if (best_root >= 0) {
            best_root = find(parent, (int32_t)best_root);
            omega[lv] = best_root;
        }
    }
    int64_t *core_depth = malloc((n_runs > 0 ? n_runs : 1) * sizeof(int64_t));
    if (!core_depth) { free(s.row_ptr); return -1; }
    for (int64_t r = 0; r < n_runs; r++) core_depth[r] = -1;  /* an M_10 component has one depth */
    int64_t y = 0, row = 0, run = -1;
    for (j = 0; j < n_unknown; j++) {
        int64_t p = idx[j];
        uint8_t lv = flat[p];
        int32_t node;
        if (lv == 0) { depth[j] = 0; continue; }
        if (lv == N_LEVELS) {
            while (p >= row + w) { row += w; y++; }
            int64_t x = p - row;
            if (run < 0 || run_y[run] != y || !(run_x0[run] <= x && x < run_x1[run])) run = run_at(s.row_ptr, run_x0, y, x);
            node = run_root[run];
            if (core_depth[node] >= 0) { depth[j] = (uint8_t)core_depth[node]; continue; }
        } else {
            node = (int32_t)(n_runs + nid[p]);
        }
        int d = lv;
        int32_t first = node;
        for (int i = lv; i > 0; i--) {
            while (tparent[node] != -1 && tlevel[node] >= i) node = tparent[node];
            if (node != omega[i]) d = i - 1;
        }
        depth[j] = (uint8_t)d;
        if (lv == N_LEVELS) core_depth[first] = d;
    }
    free(core_depth);
    free(s.row_ptr);
    return 0;
}

/* conn_depth(level, unknown_idx, column_major, work, out) */
static PyObject *conn_depth(PyObject *self, PyObject *args) {
    PyObject *lo_, *io, *wo, *oo;
    int column_major;
    Buf l = {0}, ix = {0}, wk = {0}, o = {0};
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOpOO", &lo_, &io, &column_major, &wo, &oo)) return NULL;
    if (get_buf(lo_, &l, "B", 2, 0, "level") < 0 || get_buf(io, &ix, "q", 1, 0, "unknown_idx") < 0
        || get_buf(wo, &wk, "i", 2, 1, "work") < 0 || get_buf(oo, &o, "B", 1, 1, "out") < 0)
        goto done;
    int64_t h = l.view.shape[0], w = l.view.shape[1], n_unknown = ix.view.shape[0];
    if (wk.view.shape[0] != ROWS || wk.view.shape[1] < h * w || o.view.shape[0] != n_unknown) {
        PyErr_SetString(PyExc_ValueError, "conn_depth: array sizes do not match");
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = depth_compute(l.view.buf, h, w, ix.view.buf, n_unknown, column_major, wk.view.buf, wk.view.shape[1],
                       o.view.buf);
    Py_END_ALLOW_THREADS
    if (rc < 0) PyErr_NoMemory();
    else result = Py_NewRef(Py_None);
done:
    release(&l); release(&ix); release(&wk); release(&o);
    return result;
}

/* conn_terms(pred, gt, unknown_idx, depth, phi, out): |φ(g) − φ(p)| in the table's precision, widened. */
static PyObject *conn_terms(PyObject *self, PyObject *args) {
    PyObject *po, *go, *io, *dpo, *fo, *oo;
    Buf p = {0}, g = {0}, ix = {0}, dp = {0}, f = {0}, o = {0};
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "OOOOOO", &po, &go, &io, &dpo, &fo, &oo)) return NULL;
    if (get_buf(po, &p, "B", 2, 0, "prediction") < 0 || get_buf(go, &g, "B", 2, 0, "GT alpha") < 0
        || get_buf(io, &ix, "q", 1, 0, "unknown_idx") < 0 || get_buf(dpo, &dp, "B", 1, 0, "depth") < 0
        || get_buf(fo, &f, "df", 2, 0, "phi") < 0 || get_buf(oo, &o, "d", 1, 1, "out") < 0)
        goto done;
    int64_t n = ix.view.shape[0];
    if (dp.view.shape[0] != n || o.view.shape[0] != n || f.view.shape[0] != N_LEVELS + 1 || f.view.shape[1] != 256) {
        PyErr_SetString(PyExc_ValueError, "conn_terms: array sizes do not match");
        goto done;
    }
    const uint8_t *pv = p.view.buf, *gv = g.view.buf, *dv = dp.view.buf;
    const int64_t *iv = ix.view.buf;
    double *out = o.view.buf;
    int single = fmt(&f) == 'f';
    Py_BEGIN_ALLOW_THREADS
    for (int64_t j = 0; j < n; j++) {
        int64_t q = iv[j], row = (int64_t)dv[j] * 256;
        if (single) {
            const float *phi = f.view.buf;
            out[j] = (double)fabsf(phi[row + gv[q]] - phi[row + pv[q]]);
        } else {
            const double *phi = f.view.buf;
            out[j] = fabs(phi[row + gv[q]] - phi[row + pv[q]]);
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release(&p); release(&g); release(&ix); release(&dp); release(&f); release(&o);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_trimap", scan_trimap, METH_VARARGS, "scan_trimap(pred, trimap, full) -> (stray, bad, index bytes)"},
    {"grad_terms", grad_terms, METH_VARARGS, "grad_terms(pred, gt, idx, fp, fg, smooth, deriv, single, out)"},
    {"conn_levels", conn_levels, METH_VARARGS, "conn_levels(pred, gt, cuts, out)"},
    {"conn_depth", conn_depth, METH_VARARGS, "conn_depth(level, idx, column_major, work, out)"},
    {"conn_terms", conn_terms, METH_VARARGS, "conn_terms(pred, gt, idx, depth, phi, out)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "dimatting._metrics_c",
                                    "Compiled metric kernels (see dimatting.metrics_kernels).", -1, methods};

PyMODINIT_FUNC PyInit__metrics_c(void) { return PyModule_Create(&module); }
