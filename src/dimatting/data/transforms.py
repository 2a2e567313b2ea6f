"""Pipeline transforms with the reference's semantics, numpy + OpenCV, randomness passed in explicitly.

Each transform is built from the keyword arguments mmagic's config uses (same names, same defaults) and is
called as `transform(results, rng)`, where `results` is the sample dict flowing down the pipeline and `rng`
a `numpy.random.RandomState`. The reference draws from the global legacy numpy generator; drawing the same
calls, in the same order, from a RandomState seeded per sample gives the same augmentations and makes
training resumable bit-exactly (the engine derives the seed from the run seed and the sample number).

Per sample the stage-1 training pipeline draws, in this order (facts §4.3): crop size `randint(len(sizes))`,
crop centre `randint(count)`, flip `random()`, trimap erosion kernel `randint(29)`, dilation kernel
`randint(29)`. Single-value draws (`randint(1)`, `randint(1, 2)`) consume no state in numpy's legacy
generator, so calling them exactly where the reference does keeps the stream in step.

Images stay as OpenCV loads them: BGR, HxWxC, gray maps HxWx1.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from dimatting.data.decoded_cache import DecodedCache, file_version
from dimatting.errors import ConfigError, DataError

logger = logging.getLogger("dimatting.data")

Results = dict[str, Any]

IMREAD_FLAGS = {
    "color": cv2.IMREAD_COLOR,
    "grayscale": cv2.IMREAD_GRAYSCALE,
    "unchanged": cv2.IMREAD_UNCHANGED,
    "color_ignore_orientation": cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_COLOR,
    "grayscale_ignore_orientation": cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_GRAYSCALE,
}

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}


# The element types an OpenCV matrix holds (float16 as well, but not bool, int64 or float128).
CV2_DTYPES = frozenset(map(np.dtype, (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float16, np.float32,
                                      np.float64)))


def _cv2_holds(image: np.ndarray) -> bool:
    """Whether OpenCV takes `image` as one matrix: a non-empty HxW or HxWxC (C <= 512) array of a type it has."""
    shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] <= 512)
    return shape_ok and image.size > 0 and image.dtype in CV2_DTYPES


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _interpolation(name: str, where: str) -> int:
    if name not in INTERPOLATIONS:
        raise ConfigError(f"{where}: unknown interpolation '{name}'; use one of {sorted(INTERPOLATIONS)}")
    return INTERPOLATIONS[name]


def check_same_size(results: Results, keys: Sequence[str], where: str) -> None:
    """Every image under `keys` must be as large as the first (the alpha): a foreground or background of another
    size would be cropped at the wrong place, or fail to composite, without saying which file is wrong."""
    shapes = {key: results[key].shape[:2] for key in keys}
    first, (h, w) = keys[0], shapes[keys[0]]
    for key, (kh, kw) in shapes.items():
        if (kh, kw) != (h, w):
            raise DataError(f"{where}: {key} is {kw}x{kh} but {first} is {w}x{h} (WxH); every image of a sample "
                            f"must have the same size: fix or resize the {key} file")


def _resize(image: np.ndarray, size_wh: tuple[int, int], interpolation: str) -> np.ndarray:
    """cv2.resize to (w, h), keeping a trailing singleton channel (cv2 drops it)."""
    out = cv2.resize(image, size_wh, interpolation=INTERPOLATIONS[interpolation])
    if image.ndim == 3 and out.ndim == 2:
        out = out[:, :, None]
    return out


class LoadImageFromFile:
    """Read `results[f"{key}_path"]` like mmcv's cv2 backend (imdecode flags, BGR, 2-D -> HxWx1).

    Writes `key`, `ori_{key}_shape`, `{key}_channel_order`, `{key}_color_type` and, with
    `save_original_img`, `ori_{key}` (a copy, kept for the metrics at test time). A list of paths gives a
    list of images, as in the reference.
    """

    def __init__(
        self,
        key: str,
        color_type: str = "color",
        channel_order: str = "bgr",
        imdecode_backend: str | None = None,
        to_float32: bool = False,
        save_original_img: bool = False,
        use_cache: bool = False,
        to_y_channel: bool = False,
        backend_args: dict | None = None,
    ) -> None:
        if color_type not in IMREAD_FLAGS:
            raise ConfigError(
                f"LoadImageFromFile(key={key!r}): unknown color_type {color_type!r}; use one of {sorted(IMREAD_FLAGS)}"
            )
        if channel_order not in ("bgr", "rgb"):
            raise ConfigError(f"LoadImageFromFile(key={key!r}): channel_order must be 'bgr' or 'rgb'")
        if imdecode_backend not in (None, "cv2"):
            raise ConfigError(
                f"LoadImageFromFile(key={key!r}): imdecode_backend={imdecode_backend!r} is not supported; "
                "remove it (OpenCV, the reference's default, is used)"
            )
        if to_y_channel:
            raise ConfigError(f"LoadImageFromFile(key={key!r}): to_y_channel is not supported; remove it")
        if backend_args not in (None, {}) and dict(backend_args).get("backend", "local") != "local":
            raise ConfigError(f"LoadImageFromFile(key={key!r}): only local files are supported (backend_args)")
        # use_cache only changes speed in the reference (it keeps file bytes in memory); files are read each time.
        self.key = key
        self.color_type = color_type
        self.channel_order = channel_order
        self.to_float32 = to_float32
        self.save_original_img = save_original_img
        # Set by the training data set (`AdobeComp1kDataset.use_decoded_cache`); arrays from it are read-only.
        self.decoded: DecodedCache | None = None

    def _access_error(self, file: Path, exc: OSError) -> DataError:
        if isinstance(exc, FileNotFoundError):
            return DataError(
                f"{file}: {self.key} image not found; check the annotation file and data_root "
                "(re-run `dim prepare-comp1k` or `dim make-synthetic`)"
            )
        return DataError(f"{file}: cannot read the {self.key} image ({exc.strerror}); check the file")

    def _decode(self, file: Path, flag: int) -> np.ndarray:
        try:
            data = np.frombuffer(file.read_bytes(), dtype=np.uint8)
        except OSError as exc:
            raise self._access_error(file, exc) from None
        image = cv2.imdecode(data, flag) if data.size else None
        if image is None:
            raise DataError(f"{file}: cannot decode the {self.key} image (corrupt or not an image); replace it")
        return image

    def _decode_cached(self, file: Path, flag: int, cache: DecodedCache) -> np.ndarray:
        """From the decode-once cache; a miss decodes and stores, unless the file changed while being read."""
        try:
            stat = file.stat()
        except OSError as exc:
            raise self._access_error(file, exc) from None
        image = cache.get(file, stat, flag)
        if image is None:
            image = self._decode(file, flag)
            with contextlib.suppress(OSError):
                if file_version(file.stat()) == file_version(stat):
                    cache.put(file, stat, flag, image)
        return image

    def _load(self, path: str) -> np.ndarray:
        file = Path(path)
        flag = IMREAD_FLAGS[self.color_type]
        image = self._decode_cached(file, flag, self.decoded) if self.decoded else self._decode(file, flag)
        if flag == cv2.IMREAD_COLOR and self.channel_order == "rgb":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if image.ndim == 2:
            image = image[:, :, None]
        if self.to_float32:
            image = image.astype(np.float32)
        return image

    def __call__(self, results: Results, rng: np.random.RandomState | None = None) -> Results:
        paths = results[f"{self.key}_path"]
        if isinstance(paths, (list, tuple)):
            images: Any = [self._load(str(p)) for p in paths]
            shapes: Any = [im.shape for im in images]
            originals: Any = [im.copy() for im in images] if self.save_original_img else None
        else:
            images = self._load(str(paths))
            shapes = images.shape
            originals = images.copy() if self.save_original_img else None
        results[self.key] = images
        results[f"ori_{self.key}_shape"] = shapes
        results[f"{self.key}_channel_order"] = self.channel_order
        results[f"{self.key}_color_type"] = self.color_type
        if self.save_original_img:
            results[f"ori_{self.key}"] = originals
        return results


def unknown_mask(source: np.ndarray, kind: str) -> np.ndarray:
    """HxW bool mask of the unknown pixels of an HxW or HxWx1 `source` (alpha: 0 < a < 255; trimap: 128).

    For a uint8 alpha, the usual case, `a - 1 < 254` with uint8 wraparound is the same test in two passes
    instead of three; other dtypes keep the plain comparisons (a float alpha of 0.5 is unknown too).
    """
    if kind == "trimap":
        unknown = source == 128
    elif source.dtype == np.uint8:
        unknown = np.subtract(source, 1, dtype=np.uint8) < 254
    else:
        unknown = (source > 0) & (source < 255)
    return unknown.reshape(source.shape[:2])


def nth_true(mask: np.ndarray, n: int) -> int:
    """Row-major flat index of the `n`-th (from 0) True of `mask`.

    Bisects on counts down to a short stretch, so the cost is about one count over the mask whatever the
    number of Trues; `np.flatnonzero(mask)[n]` writes out the index of every one of them first.
    """
    flat = mask.reshape(-1)
    low, high = 0, flat.size
    while high - low > 4096:
        middle = (low + high) // 2
        before = np.count_nonzero(flat[low:middle])
        if n < before:
            high = middle
        else:
            low, n = middle, n - before
    return low + int(np.flatnonzero(flat[low:high])[n])


def choose_unknown_topleft(
    source: np.ndarray, crop_hw: tuple[int, int], rng: np.random.RandomState, kind: str = "alpha"
) -> tuple[int, int]:
    """Top-left corner of a crop centred on a random unknown pixel of `source` (the crop step of stage 1).

    Candidates are unknown pixels whose centred crop fits; else any unknown pixel; else the fixed centre
    `(crop_h//2, crop_w//2)`. One `randint(count)` over the row-major candidate list, even when count is 1
    (it then consumes nothing, like the reference). The unknown test runs on the window of fitting centres
    first, so the whole image is only looked at when that window has none.
    """
    h, w = source.shape[:2]
    crop_h, crop_w = crop_hw
    half_h, half_w = crop_h // 2, crop_w // 2
    mask = unknown_mask(source[half_h : h - half_h, half_w : w - half_w], kind)
    offset_h, offset_w = half_h, half_w
    count = np.count_nonzero(mask)
    if not count:
        mask = unknown_mask(source, kind)
        offset_h, offset_w = 0, 0
        count = np.count_nonzero(mask)
    if not count:
        logger.warning("No unknown pixels found!")
        mask, count = np.ones((1, 1), bool), 1  # the one candidate: (0, 0) + offset = the fixed centre
        offset_h, offset_w = half_h, half_w
    row, col = divmod(nth_true(mask, rng.randint(count)), mask.shape[1])
    top = int(np.clip(row + offset_h - half_h, 0, h - crop_h))
    left = int(np.clip(col + offset_w - half_w, 0, w - crop_w))
    return top, left


class CropAroundUnknown:
    """Crop all `keys` around a random unknown pixel, crop size drawn from `crop_sizes` (facts §4.3).

    Images smaller than the drawn crop are first upscaled (int-truncated sizes, per-key interpolation,
    alpha included). No padding. Records `crop_bbox = (left, top, right, bottom)`.
    """

    def __init__(
        self,
        keys: Sequence[str],
        crop_sizes: Sequence[int | Sequence[int]],
        unknown_source: str = "alpha",
        interpolations: str | Sequence[str] = "bilinear",
    ) -> None:
        keys = list(keys)
        if "alpha" not in keys:
            raise ConfigError(f"CropAroundUnknown: keys must contain 'alpha', got {keys}")
        if unknown_source not in ("alpha", "trimap"):
            raise ConfigError(f"CropAroundUnknown: unknown_source must be 'alpha' or 'trimap', got {unknown_source!r}")
        if unknown_source not in keys:
            raise ConfigError("CropAroundUnknown: with unknown_source='trimap', 'trimap' must be in keys")
        if not isinstance(crop_sizes, (list, tuple)) or not crop_sizes:
            raise ConfigError(f"CropAroundUnknown: crop_sizes must be a non-empty list, got {crop_sizes!r}")
        sizes = []
        for size in crop_sizes:
            pair = (size, size) if isinstance(size, int) else tuple(size)
            if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
                raise ConfigError(f"CropAroundUnknown: bad crop size {size!r}; use an int or (h, w)")
            sizes.append(pair)
        interps = [interpolations] * len(keys) if isinstance(interpolations, str) else list(interpolations)
        if len(interps) != len(keys):
            raise ConfigError("CropAroundUnknown: interpolations must be a str or one per key")
        for name in interps:
            _interpolation(name, "CropAroundUnknown")
        self.keys = keys
        self.crop_sizes = sizes
        self.unknown_source = unknown_source
        self.interpolations = interps

    def __call__(self, results: Results, rng: np.random.RandomState) -> Results:
        check_same_size(results, self.keys, "CropAroundUnknown")
        h, w = results[self.keys[0]].shape[:2]
        crop_h, crop_w = self.crop_sizes[rng.randint(len(self.crop_sizes))]
        ratio = max(crop_h / h, crop_w / w)
        if ratio > 1:
            h = max(int(h * ratio), crop_h)
            w = max(int(w * ratio), crop_w)
            for key, interp in zip(self.keys, self.interpolations, strict=True):
                results[key] = _resize(results[key], (w, h), interp)
        source = results[self.unknown_source]
        top, left = choose_unknown_topleft(source, (crop_h, crop_w), rng, self.unknown_source)
        for key in self.keys:
            results[key] = results[key][top : top + crop_h, left : left + crop_w]
        results["crop_bbox"] = (left, top, left + crop_w, top + crop_h)
        return results


class Flip:
    """Flip all `keys` together with probability `flip_ratio` (one `rng.random()` draw per call)."""

    def __init__(self, keys: str | Sequence[str], flip_ratio: float = 0.5, direction: str = "horizontal") -> None:
        if direction not in ("horizontal", "vertical"):
            raise ConfigError(f"Flip: direction must be 'horizontal' or 'vertical', got {direction!r}")
        self.keys = _as_list(keys)
        self.flip_ratio = flip_ratio
        self.direction = direction

    def _flip(self, image: np.ndarray) -> np.ndarray:
        """A flipped copy. `cv2.flip` copies a crop's rows ~10x faster than numpy's strided reversed copy;
        numpy remains for what OpenCV cannot hold (more than 3 dimensions, or dtypes such as bool or int64)."""
        axis = 1 if self.direction == "horizontal" else 0
        if _cv2_holds(image):
            return cv2.flip(image, axis).reshape(image.shape)
        return np.ascontiguousarray(np.flip(image, axis=axis))

    def __call__(self, results: Results, rng: np.random.RandomState) -> Results:
        flip = bool(rng.random() < self.flip_ratio)
        if flip:
            for key in self.keys:
                value = results[key]
                results[key] = [self._flip(v) for v in value] if isinstance(value, list) else self._flip(value)
        results.setdefault("flip_infos", []).append(
            {"keys": self.keys, "direction": self.direction, "ratio": self.flip_ratio, "flip": flip}
        )
        return results


class Resize:
    """Resize `keys` (facts §4.5). DIM: `scale=(320, 320)`, `keep_ratio=False` -> exactly 320x320, bilinear.

    `scale` is OpenCV's (w, h). `keep_ratio=True` rescales like mmcv: a float scale multiplies both sides; a
    tuple bounds the long and short edge (`-1` as short edge: rescale the short edge only); new sizes are
    `int(side * factor + 0.5)`. `size_factor` (+ `max_size`) instead crops the size down to a multiple.
    """

    def __init__(
        self,
        keys: str | Sequence[str] = "img",
        scale: float | Sequence[int] | None = None,
        keep_ratio: bool = False,
        size_factor: int | None = None,
        max_size: int | None = None,
        interpolation: str = "bilinear",
        backend: str | None = None,
        output_keys: Sequence[str] | None = None,
    ) -> None:
        self.keys = _as_list(keys)
        self.output_keys = list(output_keys) if output_keys else list(self.keys)
        if len(self.output_keys) != len(self.keys):
            raise ConfigError("Resize: output_keys must have one entry per key")
        if size_factor and (scale is not None or keep_ratio):
            raise ConfigError("Resize: size_factor needs scale=None and keep_ratio=False")
        if max_size and not size_factor:
            raise ConfigError("Resize: max_size needs size_factor")
        if isinstance(scale, float):
            if scale <= 0:
                raise ConfigError(f"Resize: scale must be positive, got {scale}")
            if not keep_ratio:
                raise ConfigError("Resize: a float scale needs keep_ratio=True")
        elif isinstance(scale, (list, tuple)) and len(scale) == 2 and all(isinstance(v, int) for v in scale):
            scale = tuple(scale)
            if min(scale) == -1:
                scale = (np.inf, max(scale))
        elif scale is not None:
            raise ConfigError(f"Resize: scale must be None, a float or a tuple of 2 ints, got {scale!r}")
        elif not size_factor:
            raise ConfigError("Resize: give scale or size_factor")
        if backend not in (None, "cv2"):
            raise ConfigError(f"Resize: backend={backend!r} is not supported; remove it (OpenCV is used)")
        _interpolation(interpolation, "Resize")
        self.scale = scale
        self.keep_ratio = keep_ratio
        self.size_factor = size_factor
        self.max_size = max_size
        self.interpolation = interpolation
        self.backend = backend

    def _target(self, h: int, w: int, scale: Any) -> tuple[tuple[int, int], Any]:
        """Output (w, h) and the scale factor the reference records."""
        if not self.keep_ratio:
            new_w, new_h = int(scale[0]), int(scale[1])
            return (new_w, new_h), np.array((new_w / w, new_h / h), dtype=np.float32)
        factor = scale if isinstance(scale, float) else min(max(scale) / max(h, w), min(scale) / min(h, w))
        return (int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)), factor

    def __call__(self, results: Results, rng: np.random.RandomState | None = None) -> Results:
        scale = self.scale
        if self.size_factor:
            h, w = results[self.keys[0]].shape[:2]
            new_h, new_w = h - h % self.size_factor, w - w % self.size_factor
            if self.max_size:
                cap = self.max_size - self.max_size % self.size_factor
                new_h, new_w = min(cap, new_h), min(cap, new_w)
            scale = (new_w, new_h)
        factor = None
        for key, out_key in zip(self.keys, self.output_keys, strict=True):
            if key not in results:
                continue
            value = results[key]
            images = value if isinstance(value, list) else [value]
            resized = []
            for image in images:
                size, factor = self._target(*image.shape[:2], scale)
                resized.append(_resize(image, size, self.interpolation))
            results[out_key] = resized if isinstance(value, list) else resized[0]
            results[f"{out_key}_shape"] = resized[-1].shape
            for meta in ("ori_{}_shape", "{}_channel_order", "{}_color_type"):
                if meta.format(key) in results:
                    results[meta.format(out_key)] = results[meta.format(key)]
        results["scale_factor"] = factor
        results["keep_ratio"] = self.keep_ratio
        results["interpolation"] = self.interpolation
        results["backend"] = self.backend
        return results


class GenerateTrimap:
    """Trimap from the alpha by erosion/dilation with elliptical kernels (facts §4.7, trap 9).

    Random mode: kernels of sizes `range(*kernel_size)` (DIM: 1..29); erosion and dilation kernels drawn
    independently, then the iteration counts (`randint(1, 2)` for DIM: no state consumed). Non-random mode:
    `kernel_size=(erode, dilate)`, `iterations=(erode, dilate)`; an int `iterations=i` means `(i, i + 1)` there
    too, as in the reference. 255 where the eroded alpha is 255, 0 where the dilated alpha is 0, else 128.
    """

    def __init__(
        self, kernel_size: int | Sequence[int], iterations: int | Sequence[int] = 1, random: bool = True
    ) -> None:
        kernel_size = self._pair(kernel_size, "kernel_size")
        self.iterations = self._pair(iterations, "iterations")
        self.random = random
        if random:
            sizes = range(kernel_size[0], kernel_size[1])
            if not sizes:
                raise ConfigError(f"GenerateTrimap: empty kernel_size range {kernel_size}")
        else:
            sizes = kernel_size
        self.kernels = [cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (s, s)) for s in sizes]

    @staticmethod
    def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
        if isinstance(value, int):
            return value, value + 1
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return int(value[0]), int(value[1])
        raise ConfigError(f"GenerateTrimap: {name} must be an int or 2 ints, got {value!r}")

    def __call__(self, results: Results, rng: np.random.RandomState) -> Results:
        alpha = results["alpha"]
        if self.random:
            erode_k = rng.randint(len(self.kernels))
            dilate_k = rng.randint(len(self.kernels))
            erode_it = rng.randint(*self.iterations)
            dilate_it = rng.randint(*self.iterations)
        else:
            erode_k, dilate_k = 0, 1
            erode_it, dilate_it = self.iterations
        eroded = cv2.erode(alpha, self.kernels[erode_k], iterations=int(erode_it))
        dilated = cv2.dilate(alpha, self.kernels[dilate_k], iterations=int(dilate_it))
        results["trimap"] = self._levels(eroded, dilated, alpha)
        return results

    @staticmethod
    def _levels(eroded: np.ndarray, dilated: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """255 where `eroded` is 255, then 0 where `dilated` is 0, else 128; shaped and typed like `alpha`.

        Built in OpenCV's output shape (HxW for an HxWx1 alpha) and reshaped at the end: HxW masks written
        through an HxWx1 array take numpy's slow path of boolean indexing, 10x longer, more than the erosions.
        """
        trimap = np.full(eroded.shape, 128, alpha.dtype)
        trimap[eroded >= 255] = 255
        trimap[dilated <= 0] = 0
        return trimap.reshape(alpha.shape)


class MergeFgAndBg:
    """Online composite: `merged = fg * a + (1 - a) * bg`, a = alpha / 255, float32, not quantised."""

    def __call__(self, results: Results, rng: np.random.RandomState | None = None) -> Results:
        check_same_size(results, ("alpha", "fg", "bg"), "MergeFgAndBg")
        alpha = results["alpha"].astype(np.float32) / 255.0
        if alpha.ndim == 2:
            alpha = alpha[:, :, None]
        results["merged"] = results["fg"] * alpha + (1.0 - alpha) * results["bg"]
        return results


class RescaleToZeroOne:
    """Convert `keys` to float32 and divide by 255 (lists element-wise). Not used by the DIM configs."""

    def __init__(self, keys: str | Sequence[str]) -> None:
        self.keys = _as_list(keys)

    def __call__(self, results: Results, rng: np.random.RandomState | None = None) -> Results:
        for key in self.keys:
            value = results[key]
            if isinstance(value, list):
                results[key] = [v.astype(np.float32) / 255.0 for v in value]
            else:
                results[key] = value.astype(np.float32) / 255.0
        return results


# Results keys the reference's data sample keeps, and the names it gives them (facts §4.9).
PACK_META_KEYS = {
    k: k
    for k in (
        "img_path", "gt_path", "merged_path", "trimap_path", "ori_shape", "img_shape", "ori_merged_shape",
        "ori_trimap_shape", "trimap_channel_order", "empty_box", "ori_img_shape", "ori_gt_shape",
        "img_channel_order", "gt_channel_order", "gt_color_type", "img_color_type", "sample_idx",
        "num_input_frames", "num_output_frames", "mask_bbox", "coord", "cell",
    )
}  # fmt: skip
PACK_DATA_KEYS = {
    "gt": "gt_img", "gt_label": "gt_label", "gt_heatmap": "gt_heatmap", "gt_unsharp": "gt_unsharp",
    "merged": "gt_merged", "ori_alpha": "ori_alpha", "fg": "gt_fg", "bg": "gt_bg", "gt_rgb": "gt_rgb",
    "alpha": "gt_alpha", "img_lq": "img_lq", "ref": "ref_img", "ref_lq": "ref_lq", "mask": "mask",
    "trimap": "trimap", "gray": "gray", "cropped_img": "cropped_img", "pred_img": "pred_img",
    "ori_trimap": "ori_trimap",
}  # fmt: skip


def _is_image(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_is_image(v) for v in value)
    return isinstance(value, torch.Tensor) or (isinstance(value, np.ndarray) and value.ndim > 1)


def image_to_tensor(value: Any) -> Any:
    """HxWxC (or HxW) arrays -> CxHxW tensors (dtype kept); a list of frames -> NxCxHxW; others unchanged."""
    if not _is_image(value):
        return value
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        frames = [image_to_tensor(v) for v in value]
        return frames[0] if len(frames) == 1 else torch.stack(frames)
    return _chw_tensor(value[:, :, None] if value.ndim == 2 else value)


def _chw_tensor(array: np.ndarray) -> torch.Tensor:
    """A C-contiguous CxHxW tensor of an HxWxC array.

    `cv2.split` writes the channel planes straight into the tensor's memory, ~10x faster than torch's
    permute-then-copy for 3 channels; one channel needs no copy at all (the permuted view is contiguous).
    """
    if array.shape[2] > 1 and _cv2_holds(array):
        planes = np.empty((array.shape[2], *array.shape[:2]), array.dtype)
        cv2.split(array, list(planes))
        return torch.from_numpy(planes)
    if not array.flags.writeable:  # e.g. a whole image from the decode-once cache's read-only memory map
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


class PackInputs:
    """Pack `results` into `{"inputs": tensor, "data_samples": {field: tensor, ..., "metainfo": {...}}}`.

    `inputs`: the present `keys` as CxHxW tensors (one key -> the tensor itself). Data fields and metainfo
    follow the reference's renaming tables (`alpha -> gt_alpha`, ...); everything else is dropped, except
    `data_keys` (kept as tensors under their own names) and `meta_keys` (kept in metainfo).
    """

    def __init__(
        self,
        keys: str | Sequence[str] = ("merged", "img"),
        meta_keys: str | Sequence[str] = (),
        data_keys: str | Sequence[str] = (),
    ) -> None:
        self.keys = _as_list(keys)
        self.meta_keys = _as_list(meta_keys)
        self.data_keys = _as_list(data_keys)

    def __call__(self, results: Results, rng: np.random.RandomState | None = None) -> Results:
        inputs: Any = {k: image_to_tensor(results[k]) for k in self.keys if results.get(k) is not None}
        if len(inputs) == 1:
            inputs = next(iter(inputs.values()))
        samples: dict[str, Any] = {}
        metainfo: dict[str, Any] = {}
        user_keys = set(self.meta_keys) | set(self.data_keys)
        for key, value in results.items():
            if key in user_keys:
                continue
            if key in PACK_META_KEYS:
                metainfo[PACK_META_KEYS[key]] = value
            if key in PACK_DATA_KEYS:
                samples[PACK_DATA_KEYS[key]] = image_to_tensor(value)
        for key in self.meta_keys:
            if key in results:
                metainfo[key] = results[key]
        for key in self.data_keys:
            if key in results:
                samples[key] = image_to_tensor(results[key])
        samples["metainfo"] = metainfo
        return {"inputs": inputs, "data_samples": samples}


def _stack(values: list, what: str) -> Any:
    if all(isinstance(v, torch.Tensor) for v in values):
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            raise ConfigError(
                f"cannot batch {what} of different sizes {sorted(shapes)}; use batch_size=1 "
                "(test images keep their own size)"
            )
        return torch.stack(values)
    return values


def collate(samples: Sequence[Results]) -> Results:
    """Batch packed samples: tensors stacked along a new first dim N, metainfo as a list of N dicts."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    first = samples[0]
    if isinstance(first["inputs"], dict):
        inputs: Any = {k: _stack([s["inputs"][k] for s in samples], k) for k in first["inputs"]}
    else:
        inputs = _stack([s["inputs"] for s in samples], "inputs")
    fields = [k for k in first["data_samples"] if k != "metainfo"]
    for sample in samples[1:]:
        if [k for k in sample["data_samples"] if k != "metainfo"] != fields:
            raise ValueError("collate: samples carry different data fields; use one pipeline per batch")
    data = {k: _stack([s["data_samples"][k] for s in samples], k) for k in fields}
    data["metainfo"] = [dict(s["data_samples"].get("metainfo", {})) for s in samples]
    return {"inputs": inputs, "data_samples": data}
