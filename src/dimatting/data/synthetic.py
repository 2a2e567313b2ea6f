"""A procedural Composition-1k stand-in: foregrounds with soft edges and hair, backgrounds, composites.

Real Comp-1k cannot be redistributed, so the quickstart and the end-to-end tests train on this. Each sample
is a foreground object (a thresholded smooth-noise blob with a soft, locally varying edge ramp, sometimes a
semi-transparent patch, plus thin anti-aliased "hair" strands leaving the boundary), a textured foreground
colour layer and a textured background. Foregrounds take warm, saturated hues with blotchy texture;
backgrounds cool or grey hues with gradients, stripes and noise: the colour/texture of a pixel says how much
of it is foreground, so a small DIM learns the task in minutes.

The files mirror `dim prepare-comp1k`'s output (names, folders, json in the reference's list format); the
composite is `fg * a + bg * (1 - a)` in float64 truncated to uint8, exactly like the reference's
preparation. Test trimaps come from the alpha by erosion/dilation with 5..15 px elliptical kernels.
Each sample has its own generator seeded from (seed, split, index): the output is byte-identical for a seed,
and a larger `n_train` keeps the earlier samples unchanged.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from dimatting.io import write_bytes, write_json

logger = logging.getLogger("dimatting.data")

ADOBE = "Adobe-licensed images"
_SPLITS = {"train": (0, "Training_set", "training_list.json"), "test": (1, "Test_set", "test_list.json")}
# Fast PNG settings (Huffman only): ~2x faster than the default on these noisy textures, ~same size.
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise with features about `cell` pixels wide (upsampled random grid)."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    field = cv2.resize(rng.standard_normal((gh, gw)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def _hsv_colour(rng: np.random.Generator, hue: float, sat: tuple[float, float], val: tuple[float, float]):
    """One BGR colour (float 0..255) from a hue in degrees and saturation/value ranges."""
    pixel = np.array([[[hue / 2.0, rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], dtype=np.float32)
    return cv2.cvtColor(pixel.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _foreground(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Warm saturated hues (red..yellow, magenta) blended by blotchy noise, with fine grain."""
    hues = [rng.choice([rng.uniform(0, 60), rng.uniform(300, 360)]) % 360 for _ in range(2)]
    c1, c2 = (_hsv_colour(rng, hue, (0.55, 1.0), (0.45, 1.0)) for hue in hues)
    mix = np.clip(0.5 + 0.5 * _smooth_noise(rng, h, w, rng.uniform(12, 50)), 0, 1)[:, :, None]
    image = c1 * mix + c2 * (1 - mix)
    image += rng.uniform(2, 8) * rng.standard_normal((h, w, 1), dtype=np.float32)
    return np.clip(image, 0, 255)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Cool or grey hues (green..blue) as a gradient, stripes or noise texture."""
    c1, c2 = (_hsv_colour(rng, rng.uniform(90, 250), (0.0, 0.6), (0.2, 0.95)) for _ in range(2))
    angle = rng.uniform(0, np.pi)
    ys, xs = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    ramp = (np.float32(np.sin(angle)) * ys[:, None] + np.float32(np.cos(angle)) * xs[None, :]) / max(h, w)
    kind = rng.integers(3)
    if kind == 0:
        mix = ramp - ramp.min()
        mix /= mix.max() + 1e-6
    elif kind == 1:
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * ramp * rng.uniform(3, 20) + rng.uniform(0, 2 * np.pi))
    else:
        mix = np.clip(0.5 + 0.3 * _smooth_noise(rng, h, w, rng.uniform(4, 30)), 0, 1)
    image = c1 * mix[:, :, None] + c2 * (1 - mix[:, :, None])
    image += rng.uniform(1, 10) * rng.standard_normal((h, w, 3), dtype=np.float32)
    return np.clip(image, 0, 255)


def _soft_blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Alpha in [0, 1] of a compact noisy blob whose edge ramp varies along the contour (0.6-8 px at 320²)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
    radius = rng.uniform(0.18, 0.32) * min(h, w)
    bump = 1.0 - np.sqrt(((yy - cy) / radius) ** 2 + ((xx - cx) / radius) ** 2)
    unit = max(min(h, w) / 320.0, 0.25)  # lengths below are in pixels of a 320x320 image
    field = bump + rng.uniform(0.1, 0.3) * _smooth_noise(rng, h, w, rng.uniform(15, 50) * unit)
    mask = (field > 0).astype(np.uint8)
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 3)
    signed = np.where(mask > 0, inside - 0.5, 0.5 - outside)  # the contour lies between pixels
    width = np.maximum(np.clip(1.5 + 1.5 * _smooth_noise(rng, h, w, 60.0 * unit), 0.3, 4.0) * unit, 0.6)
    alpha = np.clip(0.5 + signed / (2 * width), 0, 1)
    if rng.random() < 0.25:
        patch = _smooth_noise(rng, h, w, 30.0) > 0.8
        alpha = np.where(patch & (alpha >= 1), rng.uniform(0.3, 0.8), alpha)
        alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), 1.5)
    return alpha.astype(np.float32)


def _hair(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """Thin strands (0..60) growing outward from the boundary, drawn anti-aliased at 4x and averaged down."""
    h, w = alpha.shape
    boundary = np.flatnonzero((alpha > 0.1) & (alpha < 0.9))
    n = int(rng.integers(0, 61)) if boundary.size else 0
    if n == 0:
        return np.zeros_like(alpha)
    gy = cv2.Sobel(alpha, cv2.CV_32F, 0, 1, ksize=5)
    gx = cv2.Sobel(alpha, cv2.CV_32F, 1, 0, ksize=5)
    scale = 4
    step = 2.0 * max(min(h, w) / 320.0, 0.25)
    canvas = np.zeros((h * scale, w * scale), dtype=np.uint8)
    for start in rng.choice(boundary, size=n):
        y, x = divmod(int(start), w)
        heading = np.arctan2(-gy[y, x], -gx[y, x]) + rng.normal(0, 0.4)
        steps = int(rng.integers(6, 30))
        turns = np.cumsum(rng.normal(0, 0.25, steps))
        xs = x + np.cumsum(np.cos(heading + turns) * step)
        ys = y + np.cumsum(np.sin(heading + turns) * step)
        points = np.stack([np.r_[x, xs], np.r_[y, ys]], axis=1) * scale
        cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, int(rng.integers(160, 256)),
                      thickness=int(rng.integers(1, 4)), lineType=cv2.LINE_AA)  # fmt: skip
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _trimap(rng: np.random.Generator, alpha: np.ndarray) -> np.ndarray:
    """Test trimap: 255 where the eroded alpha is 255, 0 where the dilated alpha is 0, 128 between."""
    k_erode, k_dilate = (int(k) for k in rng.integers(5, 16, size=2))
    eroded = cv2.erode(alpha, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k_erode, k_erode)))
    dilated = cv2.dilate(alpha, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k_dilate, k_dilate)))
    trimap = np.full_like(alpha, 128)
    trimap[eroded >= 255] = 255
    trimap[dilated <= 0] = 0
    return trimap


def make_sample(seed: int, split: str, index: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """One sample's uint8 BGR `fg`, `bg`, `merged`, gray `alpha` and (test split) `trimap`."""
    rng = np.random.default_rng([seed, _SPLITS[split][0], index])
    h, w = size
    alpha_f = _soft_blob(rng, h, w)
    alpha_f = np.maximum(alpha_f, _hair(rng, alpha_f))
    alpha = np.round(alpha_f * 255).astype(np.uint8)
    fg = _foreground(rng, h, w).astype(np.uint8)
    bg = _background(rng, h, w).astype(np.uint8)
    a = alpha.astype(np.float64)[:, :, None] / 255.0
    merged = (fg * a + bg * (1.0 - a)).astype(np.uint8)
    sample = {"fg": fg, "alpha": alpha, "bg": bg, "merged": merged}
    if split == "test":
        sample["trimap"] = _trimap(rng, alpha)
    return sample


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, _PNG)
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return buf.tobytes()


def _record_paths(split: str, name: str) -> dict[str, str]:
    """The paths (relative to the dataset root) `dim prepare-comp1k` would give this sample."""
    folder = _SPLITS[split][1]
    paths = {
        "alpha_path": f"{folder}/{ADOBE}/alpha/{name}.png",
        "fg_path": f"{folder}/{ADOBE}/fg/{name}.png",
        "bg_path": f"{folder}/bg/{name}_0.png",
        "merged_path": f"{folder}/merged/{name}_0.png",
    }
    if split == "test":
        paths["trimap_path"] = f"{folder}/{ADOBE}/trimaps/{name}_0.png"
    return paths


def _write_sample(out: Path, split: str, index: int, seed: int, size: tuple[int, int]) -> dict[str, str]:
    """Generate and write one sample; returns its json record."""
    paths = _record_paths(split, f"synth_{split}_{index:05d}")
    for key, image in make_sample(seed, split, index, size).items():
        write_bytes(out / paths[f"{key}_path"], _png(image))
    return paths


def make_synthetic(
    out_dir: str | os.PathLike,
    n_train: int,
    n_test: int,
    seed: int = 0,
    size: tuple[int, int] = (320, 320),
    nproc: int = 1,
) -> Path:
    """Write a synthetic Comp-1k-layout dataset (files + `training_list.json`, `test_list.json`) to `out_dir`.

    `size` is (H, W); `nproc` > 1 generates in that many processes (same bytes). Returns `out_dir` as a
    Path. Files are written atomically and the json files last, so a dataset whose json exists is complete.
    """
    if n_train < 0 or n_test < 0:
        raise ValueError("n_train and n_test must be >= 0")
    h, w = (int(v) for v in size)
    if h < 32 or w < 32:
        raise ValueError(f"size must be at least 32x32, got {h}x{w}")
    out = Path(out_dir)
    jobs = [(split, i) for split, count in (("train", n_train), ("test", n_test)) for i in range(count)]
    if nproc > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=nproc) as pool:
            futures = [pool.submit(_write_sample, out, split, i, seed, (h, w)) for split, i in jobs]
            records = [f.result() for f in futures]
    else:
        records = [_write_sample(out, split, i, seed, (h, w)) for split, i in jobs]
    write_json(out / _SPLITS["train"][2], records[:n_train])
    write_json(out / _SPLITS["test"][2], records[n_train:])
    logger.info("synthetic dataset: %d train + %d test samples of %dx%d in %s", n_train, n_test, h, w, out)
    return out
