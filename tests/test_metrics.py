"""dimatting.metrics against mmagic's golden values, the MATLAB protocol's hand-checked cases (facts §11.9),
and a literal restatement of each protocol on random inputs (including ties between equal largest components
and components that merge across thresholds in the union-find)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.ndimage

import dimatting.metrics as metrics
from dimatting.errors import InputError
from dimatting.metrics import compute_metrics, evaluate, format_table

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("SAD", "MSE", "GRAD", "CONN")


def _bench():
    """The reference-style baseline lives in the benchmark (one copy, used for timing and here for values)."""
    spec = importlib.util.spec_from_file_location("bench_metrics", ROOT / "benchmarks" / "bench_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _close(ours: float, ref: float, rel: float = 1e-6) -> bool:
    return abs(ours - ref) <= max(rel * abs(ref), 1e-9)


def _case(golden_dir: Path, stem: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    read = [cv2.imread(str(golden_dir / "metrics_cases" / d / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            for d in ("pred", "gt", "trimap")]
    return read[0], read[1], read[2]


@pytest.fixture(scope="module")
def golden(golden_dir: Path) -> dict:
    return json.loads((golden_dir / "metrics.json").read_text())


def test_golden_cases_equal_mmagic(golden_dir: Path, golden: dict) -> None:
    checked = 0
    for stem, expected in golden["images"].items():
        if expected.get("error"):
            continue
        ours = compute_metrics(*_case(golden_dir, stem))
        for name in NAMES:
            assert _close(ours[name], expected[name]), (stem, name, ours[name], expected[name])
        checked += 1
    assert checked == 8


def test_golden_mean_via_evaluate(golden_dir: Path, golden: dict) -> None:
    stems = [s for s, v in golden["images"].items() if not v.get("error")]
    cases = [_case(golden_dir, s) for s in stems]
    result = evaluate(*zip(*cases, strict=True), names=stems)
    assert result["protocol"] == "mmagic" and result["n"] == len(stems)
    assert set(result["images"]) == set(stems)
    for name in NAMES:
        assert _close(result["mean"][name], golden["mean"][name])


def test_unmasked_prediction_is_masked_with_warning(golden_dir: Path, golden: dict, caplog, monkeypatch) -> None:
    """Case 08 (mmagic raises): we mask by the trimap, warn, and give the masked prediction's numbers."""
    # dimatting.cli.main (run by other tests) points the "dimatting" logger at its own stderr handler
    monkeypatch.setattr(logging.getLogger("dimatting"), "handlers", [])
    monkeypatch.setattr(logging.getLogger("dimatting"), "propagate", True)
    pred, gt, trimap = _case(golden_dir, "08_unmasked_pred_raises")
    masked = pred.copy()
    masked[trimap == 0], masked[trimap == 255] = 0, 255
    assert (masked != pred).any()
    with caplog.at_level(logging.WARNING, logger="dimatting"):
        ours = compute_metrics(pred, gt, trimap, name="08.png")
    assert any("not masked" in r.getMessage() and "08.png" in r.getMessage() for r in caplog.records)
    assert ours == compute_metrics(masked, gt, trimap)
    # this case's masked prediction is case 01's, whose golden values are known
    for name in NAMES:
        assert _close(ours[name], golden["images"]["01_perfect_masked_gt"][name])


# ------------------------------------------------------------------------------ facts §11.9 (6x6 cases)
def _rows(text: str) -> np.ndarray:
    return np.array([[int(v) for v in row.split()] for row in text.split("/")], dtype=np.uint8)


CASE1 = (
    _rows("0 0 60 200 255 255/0 0 100 255 255 255/0 0 140 255 255 255/0 0 210 120 255 255/"
          "0 0 128 90 255 255/0 0 0 10 255 255"),
    _rows("0 0 51 204 255 255/0 0 102 230 255 255/0 0 150 255 255 255/0 0 204 128 255 255/"
          "0 0 128 77 255 255/0 0 26 0 255 255"),
    np.tile(np.array([0, 0, 128, 128, 255, 255], dtype=np.uint8), (6, 1)),
)
CASE2 = (
    _rows("0 0 0 0 0 0/0 200 90 128 170 0/0 60 153 170 210 255/0 100 150 240 255 255/"
          "0 140 200 250 255 255/0 0 255 255 255 255"),
    _rows("20 0 0 0 0 0/0 26 77 128 179 0/0 51 153 153 204 255/0 102 153 230 255 255/"
          "0 128 204 255 255 255/0 0 255 255 255 240"),
    _rows("0 0 0 0 0 0/0 128 128 128 128 0/0 128 128 128 128 255/0 128 128 128 128 255/"
          "0 128 128 128 128 255/0 0 255 255 255 255"),
)
_p3, _g3 = np.zeros((6, 6), np.uint8), np.zeros((6, 6), np.uint8)
_p3[0:2, 4:6], _p3[4:6, 0:2] = 230, 115
_g3[0:2, 4:6], _g3[4:6, 0:2] = 110, 204
CASE3 = (_p3, _g3, np.full((6, 6), 128, np.uint8))

MATLAB_CASES = [
    # case, protocol, SAD, MSE, GRAD, CONN
    (CASE1, "matlab", 113 / 255000, 1871 / (65025 * 12), 1.695380e-05, 2 / 85 / 1000),
    (CASE1, "mmagic", 113 / 255000, 1871 / (65025 * 12), 1.695380e-05, 2 / 85 / 1000),
    (CASE2, "matlab", 264 / 255000, 31230 / (65025 * 16), 1.202692e-04, 349 / 510 / 1000),
    (CASE2, "mmagic", 299 / 255000, 31855 / (65025 * 16), 1.202692e-04, 217 / 255 / 1000),
    (CASE3, "matlab", 836 / 255000, 89284 / (65025 * 36), 2.377098e-02, 296 / 85 / 1000),  # GCA-copy rule
    (CASE3, "mmagic", 836 / 255000, 89284 / (65025 * 36), 2.377098e-02, 868 / 255 / 1000),
]


@pytest.mark.parametrize("case,protocol,sad,mse,grad,conn", MATLAB_CASES,
                         ids=["1-matlab", "1-mmagic", "2-matlab", "2-mmagic", "3-matlab", "3-mmagic"])
def test_facts_11_9_cases(case, protocol, sad, mse, grad, conn) -> None:
    ours = compute_metrics(*case, protocol=protocol)
    assert _close(ours["SAD"], sad) and _close(ours["MSE"], mse)
    assert _close(ours["GRAD"], grad, rel=1e-5)  # the facts give GRAD to 7 digits
    assert _close(ours["CONN"], conn)


def test_thresholds_of_both_protocols() -> None:
    assert metrics.THRESHOLDS["mmagic"][6] == 0.6000000000000001 and metrics.THRESHOLDS["matlab"][6] == 0.6
    assert metrics.THRESHOLDS["matlab"][7] == 0.7 and metrics.THRESHOLDS["mmagic"][3] == 0.30000000000000004
    assert metrics.THRESHOLDS["matlab"][3] == 0.30000000000000004


# ---------------------------------------------------------------------------- random inputs vs literal code
def _matlab_literal(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """§11.3-11.6 restated literally (float32 terms, U-only sums, MATLAB colon, column-major labels)."""
    u = trimap == 128
    p32, g32 = pred.astype(np.float32) / np.float32(255), gt.astype(np.float32) / np.float32(255)
    e = np.abs(pred.astype(np.float32) - gt.astype(np.float32)) / np.float32(255)
    out = {"SAD": float(e[u].astype(np.float64).sum()) / 1000,
           "MSE": float((e * e)[u].astype(np.float64).sum()) / u.sum() if u.any() else 0.0}
    kx, _ = _bench().ref_gauss_kernel()

    def amp(a: np.ndarray) -> np.ndarray:
        lo, hi = float(a.min()), float(a.max())
        i = (a - lo) / (hi - lo) if hi > lo else np.zeros(a.shape)
        gx = scipy.ndimage.convolve(i, kx, mode="nearest")
        gy = scipy.ndimage.convolve(i, kx.T, mode="nearest")
        return np.sqrt(gx**2 + gy**2)

    d = amp(pred.astype(np.float64)).astype(np.float32) - amp(gt.astype(np.float64)).astype(np.float32)
    out["GRAD"] = float((d * d)[u].astype(np.float64).sum()) / 1000
    thresholds = [0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]
    level = -np.ones(pred.shape)
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    for i in range(1, 11):
        m = (p32 >= thresholds[i]) & (g32 >= thresholds[i])
        labels = scipy.ndimage.label(m.T, structure=cross)[0].T
        omega = np.zeros(m.shape, dtype=bool)
        if labels.max() > 0:
            omega = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
        level[(level == -1) & ~omega] = thresholds[i - 1]
    level[level == -1] = 1
    l32 = level.astype(np.float32)
    dp, dg = p32 - l32, g32 - l32
    phi = np.abs((1 - dp * (dp >= 0.15)) - (1 - dg * (dg >= 0.15)))
    out["CONN"] = float(phi[u].astype(np.float64).sum()) / 1000
    return out


def _random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocky maps (equal-size components, ties), levels at the threshold edges (153 = 0.6), masked pred."""
    h, w = rng.integers(3, 90, 2)
    block = int(rng.integers(1, 7))
    levels = np.array([0, 0, 25, 26, 51, 102, 128, 153, 154, 204, 230, 255, 255])

    def blocky(values: np.ndarray) -> np.ndarray:
        small = rng.choice(values, size=(h // block + 1, w // block + 1))
        return np.kron(small, np.ones((block, block), dtype=small.dtype))[:h, :w].astype(np.uint8)

    gt = blocky(levels)
    if rng.random() < 0.4:
        gt = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    pred = blocky(levels) if rng.random() < 0.5 else np.clip(
        gt.astype(int) + rng.integers(-50, 51, gt.shape), 0, 255).astype(np.uint8)
    trimap = blocky(np.array([0, 128, 255, 128], dtype=np.uint8))
    if rng.random() < 0.2:
        trimap[:] = 128
    pred[trimap == 0], pred[trimap == 255] = 0, 255
    return pred, gt, trimap


@pytest.mark.parametrize("seed", range(3))
def test_random_inputs_equal_literal_code(seed: int) -> None:
    bench = _bench()
    rng = np.random.default_rng(seed)
    for _ in range(25):
        pred, gt, trimap = _random_case(rng)
        ours = compute_metrics(pred, gt, trimap)
        for name in NAMES:
            ref = bench.REFERENCE[name](pred, gt, trimap)
            assert _close(ours[name], ref, rel=1e-9), ("mmagic", name, ours[name], ref)
        if rng.random() < 0.5:  # MATLAB takes the prediction as given: known pixels still move GRAD and CONN
            pred = np.where(trimap == 128, pred, rng.integers(0, 256, pred.shape)).astype(np.uint8)
        ours = compute_metrics(pred, gt, trimap, protocol="matlab")
        literal = _matlab_literal(pred, gt, trimap)
        for name in NAMES:
            assert _close(ours[name], literal[name], rel=1e-6), ("matlab", name, ours[name], literal[name])


def test_float_prediction_equals_uint8() -> None:
    pred, gt, trimap = _random_case(np.random.default_rng(7))
    for protocol in ("mmagic", "matlab"):
        a = compute_metrics(pred, gt, trimap, protocol=protocol)
        b = compute_metrics(pred / 255.0, gt, trimap, protocol=protocol)
        for name in NAMES:
            assert _close(b[name], a[name], rel=1e-6), (protocol, name)


def test_empty_unknown_region_is_defined() -> None:
    gt = np.zeros((20, 30), np.uint8)
    gt[:, 15:] = 250
    trimap = np.where(gt > 0, 255, 0).astype(np.uint8)
    pred = trimap.copy()
    ours = compute_metrics(pred, gt, trimap)
    assert ours["SAD"] == pytest.approx(300 * 5 / 255 / 1000) and ours["MSE"] == ours["GRAD"] == ours["CONN"] == 0
    assert compute_metrics(pred, gt, trimap, protocol="matlab") == {n: 0.0 for n in NAMES}


@pytest.mark.parametrize("pred,gt,trimap,message", [
    (np.zeros((4, 5), np.uint8), np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), "sizes differ"),
    (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), np.full((4, 4), 100, np.uint8), "outside {0,128,255}"),
    (np.full((4, 4), 1.5), np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8), "outside [0, 1]"),
    (np.full((4, 4), np.nan), np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8), "NaN"),
    (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), "single-channel"),
    (np.zeros((4, 4), np.int64), np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), "uint8"),
])
def test_bad_inputs_raise_one_line(pred, gt, trimap, message) -> None:
    with pytest.raises(InputError) as info:
        compute_metrics(pred, gt, trimap, name="x.png")
    assert message in str(info.value) and "x.png" in str(info.value) and "\n" not in str(info.value)


def test_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="protocol"):
        compute_metrics(*CASE1, protocol="matlab2")


def test_single_metric_functions_match() -> None:
    full = compute_metrics(*CASE2)
    assert metrics.sad(*CASE2) == full["SAD"] and metrics.mse(*CASE2) == full["MSE"]
    assert metrics.gradient_error(*CASE2) == full["GRAD"] and metrics.connectivity_error(*CASE2) == full["CONN"]


def test_evaluate_parallel_and_paths(golden_dir: Path) -> None:
    stems = ["03_noisy", "04_blurred_consistent_gt", "07_full_gt05_sinusoid"]
    cases = golden_dir / "metrics_cases"
    preds, gts, trimaps = ([cases / d / f"{s}.png" for s in stems] for d in ("pred", "gt", "trimap"))
    serial = evaluate(preds, gts, trimaps)
    assert list(serial["images"]) == stems
    seen = []
    parallel = evaluate(preds, gts, trimaps, workers=2, progress=seen.append)
    assert parallel == serial and seen == [1, 2, 3]


def test_evaluate_rejects_mismatched_lists() -> None:
    with pytest.raises(InputError, match="one of each"):
        evaluate([CASE1[0]], [], [])
    with pytest.raises(InputError, match="duplicate"):
        evaluate([CASE1[0]] * 2, [CASE1[1]] * 2, [CASE1[2]] * 2, names=["a", "a"])


def test_format_table() -> None:
    result = evaluate([CASE1[0], CASE2[0]], [CASE1[1], CASE2[1]], [CASE1[2], CASE2[2]], names=["one", "two"])
    table = format_table(result, per_image=True).splitlines()
    assert table[0] == "protocol: mmagic" and table[1].split() == ["image", *NAMES]
    assert table[3].startswith("one") and table[4].startswith("two") and table[-1].startswith("mean (n=2)")
    assert len({len(line) for line in table[1:]}) == 1  # aligned
    assert f"{result['mean']['MSE']:.6f}" in table[-1]
    assert len(format_table(result).splitlines()) == 4  # header, rule, mean


def test_format_table_shows_only_the_metrics_the_result_holds() -> None:
    result = {"protocol": "mmagic", "n": 2, "mean": {"SAD": 1.5}, "images": {"a": {"SAD": 1.0}, "b": {"SAD": 2.0}}}
    table = format_table(result, per_image=True).splitlines()
    assert table[1].split() == ["image", "SAD"] and table[-1].split() == ["mean", "(n=2)", "1.5000"]


def test_metrics_module_does_not_import_torch() -> None:
    code = "import sys, dimatting.metrics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_metrics_need_no_jit() -> None:
    """All four metrics run on the compiled kernels: numba (0.5 s to load per process) is never imported."""
    code = ("import sys, dimatting.metrics as m, numpy as np; t = np.full((9, 9), 128, np.uint8); "
            "g = np.arange(81, dtype=np.uint8).reshape(9, 9); m.compute_metrics(g, g[::-1].copy(), t); "
            "sys.exit('numba' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_compiled_kernels_say_how_to_build() -> None:
    code = ("import sys; sys.modules['dimatting._metrics_c'] = None\n"
            "try:\n    import dimatting.metrics_kernels\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.startswith("DimattingError") and "pip install -e ." in out and "build_ext --inplace" in out


def test_worker_count() -> None:
    assert metrics.worker_count(3, 1) == 3
    assert metrics.worker_count("auto", metrics.IMAGES_PER_WORKER - 1) == 1
    cores = len(os.sched_getaffinity(0))
    assert metrics.worker_count("auto", 10_000) == cores
    assert metrics.worker_count("auto", 2 * metrics.IMAGES_PER_WORKER) == min(cores, 2)
    for bad in (0, -1, "many", 1.5, True):
        with pytest.raises(InputError, match="workers"):
            metrics.worker_count(bad, 10)


THREADED_CALLER = """
import sys, cv2, numpy as np
from dimatting import metrics
if __name__ == "__main__":
    cv2.setNumThreads(2)
    cv2.GaussianBlur(np.zeros((2000, 2000), np.float32), (0, 0), 5)  # OpenCV's worker threads are running now
    paths = [[sys.argv[1]] * 3, [sys.argv[2]] * 3, [sys.argv[3]] * 3]
    assert metrics.evaluate(*paths, names=["a", "b", "c"], workers=2) == metrics.evaluate(
        *paths, names=["a", "b", "c"])
    print("ok")
"""


def test_parallel_evaluate_from_a_threaded_caller(golden_dir: Path, tmp_path: Path) -> None:
    """A caller whose OpenCV threads are running gets workers that are not forked from it (a forked child
    could block forever on a lock held by one of those threads), with the same results."""
    script = tmp_path / "caller.py"
    script.write_text(THREADED_CALLER)
    case = [golden_dir / "metrics_cases" / d / "03_noisy.png" for d in ("pred", "gt", "trimap")]
    out = subprocess.run([sys.executable, str(script), *map(str, case)], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_evaluate_reads_a_shared_gt_and_trimap_once(golden_dir: Path, monkeypatch) -> None:
    """Comp-1k scores 20 composites against one GT alpha: each GT and trimap file is decoded once, and the
    results keep the predictions' order and equal scoring each prediction alone."""
    cases = golden_dir / "metrics_cases"
    stems = ["01_perfect_masked_gt", "02_zero_unknown", "03_noisy"]
    preds = [cases / "pred" / f"{s}.png" for s in stems]
    gt, trimap = cases / "gt" / "04_blurred_consistent_gt.png", cases / "trimap" / "04_blurred_consistent_gt.png"
    decoded: list[str] = []
    real_decode = metrics.io._decode
    monkeypatch.setattr(metrics.io, "_decode", lambda path, what: decoded.append(Path(path).name)
                        or real_decode(path, what))
    names = ["c", "a", "b"]
    result = evaluate(preds, [gt] * 3, [trimap] * 3, names=names)
    assert sorted(decoded) == sorted(["04_blurred_consistent_gt.png"] * 2 + [p.name for p in preds])
    assert list(result["images"]) == names
    alone = evaluate([preds[2]], [gt], [trimap], names=["b"])
    assert result["images"]["b"] == alone["images"]["b"]


@pytest.mark.parametrize("protocol", ["mmagic", "matlab"])
def test_smooth_large_maps_equal_literal_code(protocol: str) -> None:
    """Alpha-like maps (large components that merge across thresholds, long union-find chains, wide unknown
    band) against the literal code of each protocol."""
    rng = np.random.default_rng(11)
    h, w = 160, 210
    noise = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 6)
    gt = np.clip((noise - noise.min()) / np.ptp(noise) * 400 - 120, 0, 255).astype(np.uint8)
    pred = np.clip(gt.astype(int) + cv2.GaussianBlur(rng.normal(0, 40, (h, w)), (0, 0), 3), 0, 255)
    pred = pred.astype(np.uint8)
    trimap = np.where(gt == 0, 0, np.where(gt == 255, 255, 128)).astype(np.uint8)
    trimap = np.where(cv2.dilate((trimap == 128).view(np.uint8), np.ones((15, 15), np.uint8)) > 0, 128, trimap)
    trimap = trimap.astype(np.uint8)
    pred[trimap == 0], pred[trimap == 255] = 0, 255
    ours = compute_metrics(pred, gt, trimap, protocol=protocol)
    if protocol == "mmagic":
        ref = {name: fn(pred, gt, trimap) for name, fn in _bench().REFERENCE.items()}
        assert ours["CONN"] == pytest.approx(ref["CONN"], rel=1e-12, abs=0)
    else:
        ref = _matlab_literal(pred, gt, trimap)
    for name in NAMES:
        assert _close(ours[name], ref[name], rel=1e-9 if protocol == "mmagic" else 1e-6), (name, ours[name], ref)
    assert 0 < (trimap == 128).mean() < 1 and ours["CONN"] > 0 and ours["GRAD"] > 0


def _dense_magnitude(unit: np.ndarray, kx: np.ndarray) -> np.ndarray:
    """|∇| of the min-max normalised map, dense float64 filter2D with the replicate border (the reference)."""
    n = cv2.normalize(unit, None, 0.0, 1.0, cv2.NORM_MINMAX)
    fx = cv2.filter2D(n, -1, kx, borderType=cv2.BORDER_REPLICATE)
    fy = cv2.filter2D(n, -1, kx.T, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(fx**2 + fy**2)


def _grad_trimap(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Unknown pixels as scattered points (many one-pixel runs, gaps of every size), blobs (long runs, several
    per row), full rows and columns at the four borders, or everything."""
    kind = rng.integers(4)
    if kind == 0:
        unknown = rng.random((h, w)) < rng.choice([0.15, 0.5, 0.85])
    elif kind == 1:
        unknown = np.zeros((h, w), bool)
        for _ in range(rng.integers(1, 6)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            unknown[y:y + rng.integers(1, 30), x:x + rng.integers(1, 60)] = True
    elif kind == 2:
        unknown = rng.random((h, w)) < 0.05
        unknown[[0, -1], :] = unknown[:, [0, -1]] = True
    else:
        unknown = np.ones((h, w), bool)
    return np.where(unknown, 128, np.where(rng.random((h, w)) < 0.5, 0, 255)).astype(np.uint8)


def test_grad_terms_equal_dense_filter_per_pixel() -> None:
    """The restricted separable kernel against dense filter2D, pixel by pixel, in unknown_idx order: tiny
    images (narrower or lower than the 9x9 kernel), one-pixel runs, several runs per row, runs at all four
    borders, long runs; uint8 and float64 predictions; both protocols' difference (float64 / MATLAB single)."""
    from dimatting.metrics_kernels import grad_terms

    kx, _ = _bench().ref_gauss_kernel()
    rng = np.random.default_rng(5)
    sizes = [(1, 1), (1, 17), (17, 1), (2, 2), (3, 20), (20, 3), (9, 9), (8, 8), (5, 300), (40, 130)]
    sizes += [tuple(int(v) for v in rng.integers(1, 70, 2)) for _ in range(30)]
    checked = 0
    for h, w in sizes:
        trimap = _grad_trimap(rng, h, w)
        gt = cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.float64), (0, 0), 1.5)
        gt = np.clip(gt * 3 - 250, 0, 255).astype(np.uint8)
        pred = np.clip(gt + rng.normal(0, 30, (h, w)), 0, 255).astype(np.uint8)
        for p in (pred, pred / 255.0 if rng.random() < 0.5 else rng.random((h, w))):
            unknown_idx = np.flatnonzero(trimap == 128)  # sorted row-major, as metrics._prepare gives it
            if unknown_idx.size == 0:
                continue
            unit = [a / 255.0 if a.dtype == np.uint8 else a for a in (p, gt)]
            factors = [1 / np.ptp(u) / (255.0 if a.dtype == np.uint8 else 1.0) if np.ptp(u) > 0 else 0.0
                       for u, a in zip(unit, (p, gt), strict=True)]
            mag_p, mag_g = (_dense_magnitude(u, kx)[trimap == 128] for u in unit)
            scale = (mag_p + mag_g) ** 2 + 1e-300
            ours = grad_terms(p, gt, unknown_idx, factors[0], factors[1], metrics._SMOOTH, metrics._DERIV, False)
            assert ours.shape == mag_p.shape
            assert np.all(np.abs(ours - (mag_g - mag_p) ** 2) <= 1e-12 * scale), ((h, w), p.dtype)
            d32 = mag_p.astype(np.float32) - mag_g.astype(np.float32)
            ours = grad_terms(p, gt, unknown_idx, factors[0], factors[1], metrics._SMOOTH, metrics._DERIV, True)
            assert np.all(np.abs(ours - (d32 * d32).astype(np.float64)) <= 1e-6 * scale), ((h, w), p.dtype)
            checked += unknown_idx.size
    assert checked > 20000


def test_levels_equal_threshold_comparisons_for_all_uint8_pairs() -> None:
    """CONN's per-pixel level (ten cuts compared with min(p, g)) against the thresholds compared literally, as
    each protocol holds alphas (float64 a/255; MATLAB single), for every pair of uint8 alphas."""
    values = np.arange(256, dtype=np.uint8)
    p, g = (np.ascontiguousarray(a) for a in np.meshgrid(values, values))
    for protocol, unit in (("mmagic", np.float64), ("matlab", np.float32)):
        pu, gu = p.astype(unit) / unit(255), g.astype(unit) / unit(255)
        literal = sum(((pu >= t) & (gu >= t)).astype(np.uint8) for t in metrics.THRESHOLDS[protocol][1:])
        assert np.array_equal(metrics._levels(p, g, protocol), literal), protocol


def _literal_depth(level: np.ndarray, unknown_idx: np.ndarray, column_major: bool) -> np.ndarray:
    """Per threshold i = 1..10: OpenCV labels M_i = {level ≥ i} (4-connected), Ω_i = the largest
    component, ties to the one whose first pixel comes first in row-major (or column-major) order; a pixel's
    depth is how many leading Ω_i hold it."""
    h, w = level.shape
    rows, cols = np.mgrid[0:h, 0:w]
    order_key = cols * h + rows if column_major else rows * w + cols
    inside = np.ones((h, w), bool)
    depth = np.zeros((h, w), np.int64)
    for i in range(1, 11):
        n, labels, stats, _ = cv2.connectedComponentsWithStats((level >= i).view(np.uint8), connectivity=4)
        omega = np.zeros((h, w), bool)
        if n > 1:
            area = stats[1:, cv2.CC_STAT_AREA]
            first = np.full(n, h * w)
            np.minimum.at(first, labels.ravel(), order_key.ravel())
            biggest = np.flatnonzero(area == area.max()) + 1
            omega = labels == biggest[np.argmin(first[biggest])]
        inside &= omega
        depth += inside
    return depth.ravel()[unknown_idx]


def _level_map(rng: np.random.Generator, h: int, w: int, kind: int) -> np.ndarray:
    """Level maps that stress the run sweep and the tie-breaks: uniform noise, equal-size blocks (ties, and
    components whose row-major and column-major first pixels disagree), smooth alpha-like maps (long merge
    chains), sparse 0/10 maps with long runs and 8-byte words that are almost all 0 or all 10."""
    if kind == 0:
        return rng.integers(0, 11, (h, w)).astype(np.uint8)
    if kind == 1:
        block = int(rng.integers(1, 5))
        small = rng.choice(np.array([0, 0, 0, 4, 10]), size=(h // (2 * block) + 1, w // (2 * block) + 1))
        grid = np.zeros((small.shape[0] * 2 * block, small.shape[1] * 2 * block), np.uint8)
        for (r, c), v in np.ndenumerate(small):  # equal squares separated by zero gaps: many ties
            grid[2 * block * r:2 * block * r + block, 2 * block * c:2 * block * c + block] = v
        return np.ascontiguousarray(np.roll(grid, tuple(rng.integers(0, 3, 2)), (0, 1))[:h, :w])
    if kind == 2 and min(h, w) > 2:
        smooth = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 2)
        return np.clip((smooth - smooth.min()) * 60 - 5, 0, 10).astype(np.uint8)
    lengths = rng.integers(1, rng.choice([3, 12]), h * w)  # alternating runs of 10 and 0, some of one pixel
    level = np.repeat(np.resize(np.array([10, 0], np.uint8), h * w), lengths)[:h * w].reshape(h, w)
    level[rng.random((h, w)) < rng.choice([0.0, 0.02, 0.2])] = rng.choice([1, 5, 9])
    return level


def test_conn_depth_equals_per_threshold_labelling() -> None:
    """Every unknown pixel's CONN depth from the one-pass kernel equals the per-threshold labelling, both
    tie-break orders: random and structured level maps, ties between equal-size components, thin shapes
    (1xN, Nx1), widths around multiples of 8 (the sweep reads 8 bytes at a time), the two anti-diagonal
    squares whose first pixel differs between row- and column-major order."""
    from dimatting.metrics_kernels import conn_depth

    rng = np.random.default_rng(17)
    # ties at levels 1..5: row-major takes the top-right square, column-major the bottom-left one
    squares = [[10, 0, 0, 0, 0, 5, 5], [0, 0, 0, 0, 0, 5, 5], [5, 5, 0, 0, 0, 0, 0], [5, 5, 0, 0, 0, 0, 0]]
    cases = [np.array(squares, np.uint8),
             np.zeros((3, 5), np.uint8), np.full((4, 9), 10, np.uint8), np.full((1, 1), 7, np.uint8),
             np.array([[10] * 8 + [0] + [10] * 7, [0] * 8 + [10] + [0] * 7], np.uint8)]  # words off by one
    shapes = [(1, 1), (1, 23), (23, 1), (2, 8), (8, 2), (3, 16), (5, 17), (16, 15), (9, 40)]
    shapes += [tuple(int(v) for v in rng.integers(1, 48, 2)) for _ in range(150)]
    cases += [_level_map(rng, h, w, k % 4) for k, (h, w) in enumerate(shapes)]
    checked, ties = 0, 0
    for level in cases:
        level = np.ascontiguousarray(level, dtype=np.uint8)
        h, w = level.shape
        every = np.arange(h * w)
        for unknown_idx in (every, every[rng.random(h * w) < 0.3]):
            for column_major in (False, True):
                literal = _literal_depth(level, unknown_idx, column_major)
                ours = conn_depth(level, unknown_idx, column_major)
                assert np.array_equal(ours, literal), (level, column_major)
                checked += unknown_idx.size
        ties += not np.array_equal(_literal_depth(level, every, False), _literal_depth(level, every, True))
    assert checked > 50000 and ties >= 10, ties  # the two orders really do disagree on some maps
