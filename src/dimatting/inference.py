"""Prediction: checkpoint -> `Matter` -> alpha, on the reference's test-time path.

The path (golden README steps 1-7): RGB image normalised with ImageNet mean/std (0-255 scale) plus
trimap/255 -> reflect-pad bottom/right to a multiple of 32 -> encoder-decoder (+ refiner for stage 2/3
checkpoints) -> crop back -> clamp, 0/1 where the trimap is known. A whole image runs all of it on the
model's device: only the uint8 image and trimap go there and only the alpha comes back. Large images go
through overlapping tiles (`dimatting.tiling`) so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dimatting import nnpack
from dimatting.accel import (
    CompiledOrEager,
    PendingAlpha,
    compile_mode,
    cpu_has_fast_bf16,
    cuda_available_bytes,
    pinned,
    tf32_allowed,
)
from dimatting.checkpoint import extract_state_dict, load_checkpoint, load_weights
from dimatting.errors import CheckpointError, InputError
from dimatting.hub import resolve_checkpoint
from dimatting.io import normalize_trimap
from dimatting.models import DIM, MattorPreprocessor, build_dim
from dimatting.models.dim import clamp_to_trimap, postprocess_alpha, reflect_pad_to_multiple
from dimatting.models.lean_forward import LeanForward, to_bf16
from dimatting.tiling import (
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
    DEFAULT_TILE_THRESHOLD,
    predict_tiled,
    tile_windows,
)

logger = logging.getLogger("dimatting.inference")

PRECISIONS = ("fp32", "tf32", "bf16")
PRECISION_NOTES = {
    "fp32": "IEEE fp32",
    "tf32": "TF32 convolutions, PyTorch's CUDA default and so the reference's GPU numerics "
    "(--precision fp32 for IEEE fp32)",
    "bf16": "bfloat16 fast path",
}
# On a GPU a whole image runs while its estimated peak fits in half the memory this process can still use.
# Peak bytes per pixel of a stage-3 pass, by precision (each in its default layout). The activations are
# modelled exactly by benchmarks/memory_model.py (live tensors of `LeanForward`: 532 B fp32, 268 B bf16; the
# same model gives 838 B for the former forward, whose peak measured 850 B on an H200 at 4096x4096), plus
# cuDNN's workspace: ~none for IEEE fp32, ~510 B with TF32 (same H200 run), assumed up to ~110 B for bf16.
# To confirm on a GPU: benchmarks/bench_gpu.py prints the measured bytes per pixel of each precision.
CUDA_BYTES_PER_PIXEL = {"fp32": 640, "tf32": 1152, "bf16": 384}


def default_precision(device: torch.device) -> str:
    """The reference's numerics on `device`: "tf32" on CUDA (PyTorch's default for convolutions, which mmagic
    keeps), "fp32" elsewhere."""
    return "tf32" if device.type == "cuda" else "fp32"


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda when PyTorch sees a GPU, else cpu; 'cpu', 'cuda', 'cuda:N' as given (checked)."""
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: PyTorch sees no CUDA GPU here; use --device cpu (or auto)")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise InputError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible; pick another index"
            )
        return torch.device(name)
    raise InputError(f"--device {device}: unknown device; use cpu, cuda, cuda:N or auto")


def as_rgb(image: np.ndarray, source: object = "image") -> np.ndarray:
    """An RGB uint8 HxWx3 view of an image given as gray HxW / HxWx1, RGB or RGBA (alpha dropped)."""
    image = np.asarray(image)
    if image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
    if image.dtype != np.uint8:
        raise InputError(f"{source}: image must be uint8 (0-255), got {image.dtype}; convert it first")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return image[:, :, :3]
    raise InputError(f"{source}: image of shape {image.shape} is not HxW, HxWx3 or HxWx4")


def as_trimap(trimap: np.ndarray, source: object = "trimap", tolerant: bool = False) -> np.ndarray:
    """A uint8 HxW trimap in {0, 128, 255} (3-channel with equal channels accepted; 102-style unknown remapped)."""
    trimap = np.asarray(trimap)
    if trimap.ndim == 3 and trimap.shape[2] in (1, 3, 4):
        colour = trimap[:, :, : min(3, trimap.shape[2])]
        if not (colour == colour[:, :, :1]).all():
            raise InputError(f"{source}: trimap has different colour channels; save it as a grayscale PNG")
        trimap = colour[:, :, 0]
    if trimap.ndim != 2:
        raise InputError(f"{source}: trimap of shape {trimap.shape} is not HxW")
    return normalize_trimap(np.ascontiguousarray(trimap), source=str(source), tolerant=tolerant)


def postprocess(raw: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Network output -> final alpha: clamp to [0, 1], exactly 1/0 where the trimap is 255/0."""
    alpha = np.clip(raw, 0.0, 1.0).astype(np.float32, copy=False)
    alpha[trimap == 255] = 1.0
    alpha[trimap == 0] = 0.0
    return alpha


def alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    """Float alpha in [0, 1] -> uint8 like the reference: x255 in float32, round half to even."""
    return np.rint(np.asarray(alpha, dtype=np.float32) * np.float32(255.0)).astype(np.uint8)


def cutout_rgba(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGBA uint8 cut-out: foreground colours from pymatting's multi-level estimator (Germer et al. 2020),
    which removes the background colour that bleeds into semi-transparent pixels; alpha as the 4th channel."""
    from pymatting import estimate_foreground_ml

    foreground = estimate_foreground_ml(as_rgb(image).astype(np.float64) / 255.0, alpha.astype(np.float64))
    rgb = np.clip(np.round(foreground * 255.0), 0, 255).astype(np.uint8)
    return np.dstack([rgb, alpha_to_uint8(alpha)])


@dataclass
class PreparedPair:
    """A checked image/trimap pair (RGB uint8 HxWx3, trimap uint8 HxW in {0, 128, 255}) ready to predict;
    `staged`: page-locked copies for an asynchronous upload to a GPU (None on the CPU)."""

    image: np.ndarray
    trimap: np.ndarray
    source: object = "trimap"
    staged: tuple[torch.Tensor, torch.Tensor] | None = None


class Matter:
    """A loaded DIM ready to predict alphas. Build it with `load_model`.

    `precision`: None (default) is the device's reference numerics: "tf32" on CUDA (PyTorch's default for
    convolutions there, so what mmagic runs on a GPU), "fp32" on the CPU. "fp32" on CUDA turns TF32 off (IEEE
    fp32, the CPU's results within rounding, about 3.6x slower); "bf16" is the fast path: bfloat16 weights and
    activations except the first encoder block (TF32 on a GPU, fp32 on the CPU) and the 1-channel heads (see
    `dimatting.models.lean_forward`), channels-last, opt-in because alphas move (by well under 1/255 on average
    with trained weights; docs/predict.md).
    `tile_threshold`: images with more pixels are tiled (`tile_size`, `tile_overlap`); None never tiles;
    "auto" (default): 1024x1024 on the CPU (memory), on a GPU whatever fits in half the memory left (tiles
    cost time there and only save memory; `CUDA_BYTES_PER_PIXEL`). `channels_last` stores activations NHWC,
    which oneDNN convolves faster; its float rounding differs slightly, which can flip near-tied max-pool
    windows, mostly in known regions that the trimap overwrites anyway. False is the reference's NCHW
    layout: raw output bit-identical to mmagic's on the golden inputs. None (default): NHWC on the CPU with
    oneDNN and for bf16, NCHW with NNPACK and for fp32/tf32 on CUDA (cuDNN's fp32 NCHW kernels were faster
    there, with less memory). `conv_backend` (CPU, fp32): "nnpack" runs the 3x3/5x5 convolutions as
    Winograd/FFT transforms (`dimatting.nnpack`), "onednn" as PyTorch's default direct convolutions; "auto"
    (default) picks NNPACK on AVX2 CPUs without AVX-512 unless a layout is given.
    `compile`: run the whole-image path (upload to alpha) through torch.compile: True or a mode name
    ("reduce-overhead" adds CUDA graphs). Each new input size compiles once (tens of seconds), so it pays
    for many images of one size (a server, a long folder), not for one image; off by default.
    """

    def __init__(
        self,
        model: DIM,
        device: torch.device,
        tile_size: int = DEFAULT_TILE_SIZE,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        tile_threshold: int | str | None = "auto",
        precision: str | None = None,
        channels_last: bool | None = None,
        conv_backend: str = "auto",
        compile: bool | str | None = False,
    ) -> None:
        precision = default_precision(device) if precision is None else precision
        if precision not in PRECISIONS:
            raise InputError(f"--precision {precision}: unknown; use one of {', '.join(PRECISIONS)}")
        if precision == "tf32" and device.type != "cuda":
            raise InputError("--precision tf32: TF32 is a CUDA tensor-core format; on the CPU use fp32 or bf16")
        if precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
            logger.warning("--precision bf16: this CPU has no bfloat16 kernels in PyTorch (they need AVX-512), "
                           "so bf16 runs 10-100x slower than fp32 here; use fp32")
        self._set_tiling(tile_size, tile_overlap, tile_threshold)
        mode = compile_mode(compile)
        self.device = device
        self.precision = precision
        self.model = model.eval().to(device)
        self.conv_backend = nnpack.choose(conv_backend, device, precision, layout_requested=channels_last is not None)
        if self.conv_backend == "nnpack":
            nnpack.use_nnpack(self.model)
        if channels_last is None:
            channels_last = (device.type == "cpu" and self.conv_backend == "onednn") or precision == "bf16"
        self.channels_last = channels_last
        if precision == "bf16":
            to_bf16(self.model)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.network = LeanForward(self.model, precise_first_block=precision == "bf16")
        self._alpha_fn = CompiledOrEager(self._alpha_on_device, mode)
        self._raw_fn = CompiledOrEager(self._raw_on_device, mode)

    def _set_tiling(self, tile_size: int, tile_overlap: int, tile_threshold: int | str | None) -> None:
        if tile_size % 32 or tile_size < 64 or not 0 <= tile_overlap < tile_size:
            raise InputError(
                f"--tile-size {tile_size} / overlap {tile_overlap}: the tile size must be a multiple of 32 "
                "(>= 64) and larger than the overlap"
            )
        if not (tile_threshold in (None, "auto") or (isinstance(tile_threshold, int) and tile_threshold >= 0)):
            raise InputError(f"--tile-threshold {tile_threshold}: give a pixel count >= 0 or auto")
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.tile_threshold = tile_threshold

    @property
    def refines(self) -> bool:
        """True for stage 2/3 checkpoints: the refiner's output is the prediction."""
        return self.model.refine

    def uses_tiles(self, height: int, width: int) -> bool:
        threshold = self.tile_threshold
        if threshold == "auto":
            threshold = DEFAULT_TILE_THRESHOLD
            if self.device.type == "cuda":  # memory left now, not at load time: other processes share the GPU
                per_pixel = CUDA_BYTES_PER_PIXEL[self.precision]
                threshold = max(threshold, cuda_available_bytes(self.device) // 2 // per_pixel)
        return threshold is not None and height * width > threshold

    def _numerics(self) -> contextlib.AbstractContextManager:
        """On CUDA, TF32 unless the precision is "fp32" (bf16's fp32 parts, the first block and the heads, run
        in TF32 there: IEEE fp32 convolutions would cost more than all the bf16 ones)."""
        return tf32_allowed(self.precision != "fp32") if self.device.type == "cuda" else contextlib.nullcontext()

    def _raw_on_device(self, image: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
        """uint8 HxWx3 image and HxW trimap on the device -> float32 HxW network output, all on the device:
        normalise, reflect-pad to /32, forward (refined for stage 2/3), crop back."""
        height, width = trimap.shape
        x = self.model.data_preprocessor(image.permute(2, 0, 1)[None], trimap[None, None], bgr=False)
        # The layout is set after padding: the HxWx3 image arrives with NHWC strides (the "NCHW" path would
        # convolve NHWC), and CUDA's reflection pad returns NCHW whatever its input (the bf16 path wants NHWC).
        x = reflect_pad_to_multiple(x)
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return self.network(x)[0, 0, :height, :width]

    def _alpha_on_device(self, image: torch.Tensor, trimap: torch.Tensor, as_uint8: bool) -> torch.Tensor:
        """`_raw_on_device`, then clamp and the trimap's 0/1 (and x255, round half to even for uint8)."""
        raw = self._raw_on_device(image, trimap)
        return postprocess_alpha(raw, trimap) if as_uint8 else clamp_to_trimap(raw, trimap)

    def _upload(self, image: np.ndarray, trimap: np.ndarray, staged: tuple | None = None) -> tuple:
        if staged is None:
            staged = torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(trimap))
        return tuple(t.to(self.device, non_blocking=True) for t in staged)

    def run_network(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        """One whole-image pass (RGB uint8 HxWx3, trimap uint8 HxW) -> float32 HxW before postprocessing."""
        with torch.inference_mode(), self._numerics():
            return self._raw_fn(*self._upload(image, trimap)).cpu().numpy()

    def predict_raw(
        self,
        image: np.ndarray,
        trimap: np.ndarray,
        tiled: bool | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Network output for a checked image/trimap pair, whole or tiled (None: by size), before postprocess."""
        height, width = trimap.shape
        if tiled is None:
            tiled = self.uses_tiles(height, width)
        if not tiled:
            return self.run_network(image, trimap)
        return predict_tiled(self.run_network, image, trimap, self.tile_size, self.tile_overlap, progress)

    def count_tiles(self, height: int, width: int) -> int:
        return len(tile_windows(height, width, self.tile_size, self.tile_overlap))

    def prepare(self, image: np.ndarray, trimap: np.ndarray, source: object = "trimap") -> PreparedPair:
        """Check and convert an image/trimap pair on the host (folder loaders call this in their threads)."""
        image = as_rgb(image)
        trimap = as_trimap(trimap, source=source)
        if image.shape[:2] != trimap.shape:
            raise InputError(
                f"{source}: size {trimap.shape[1]}x{trimap.shape[0]} does not match the image "
                f"({image.shape[1]}x{image.shape[0]}, WxH); resize it to match"
            )
        # page-locked copies for an asynchronous upload, not for an image that will go in tiles (pinning a
        # 16384² image would lock 1 GiB of host memory that no upload uses)
        whole = self.device.type == "cuda" and not self.uses_tiles(*trimap.shape)
        staged = (pinned(image), pinned(trimap)) if whole else None
        return PreparedPair(image, trimap, source, staged)

    def submit(
        self,
        pair: PreparedPair,
        tiled: bool | None = None,
        progress: Callable[[int], None] | None = None,
        as_uint8: bool = False,
    ) -> PendingAlpha:
        """Start predicting a prepared pair; on a GPU this returns once the work is queued (see `predict`)."""
        trimap = pair.trimap
        if not (trimap == 128).any():
            logger.warning("%s: no unknown pixels, so the alpha is the trimap (nothing to predict)", pair.source)
            return PendingAlpha(trimap.copy() if as_uint8 else trimap.astype(np.float32) / np.float32(255.0))
        if tiled is None:
            tiled = self.uses_tiles(*trimap.shape)
        if tiled:
            alpha = postprocess(self.predict_raw(pair.image, trimap, tiled=True, progress=progress), trimap)
            return PendingAlpha(alpha_to_uint8(alpha) if as_uint8 else alpha)
        return self._submit_whole(pair, as_uint8)

    def _submit_whole(self, pair: PreparedPair, as_uint8: bool) -> PendingAlpha:
        with torch.inference_mode(), self._numerics():
            alpha = self._alpha_fn(*self._upload(pair.image, pair.trimap, pair.staged), as_uint8)
            return PendingAlpha.from_tensor(alpha)

    def predict(
        self,
        image: np.ndarray,
        trimap: np.ndarray,
        tiled: bool | None = None,
        progress: Callable[[int], None] | None = None,
        source: object = "trimap",
        as_uint8: bool = False,
    ) -> np.ndarray:
        """Alpha float32 HxW in [0, 1] for an RGB (or gray/RGBA) uint8 image and a uint8 trimap.

        Exactly 0/1 where the trimap is 0/255. A trimap without unknown pixels gives trimap/255 (warning).
        `source` names the trimap in messages. `as_uint8`: the uint8 alpha as saved in PNGs instead
        (`alpha_to_uint8`, computed on the device, so only a quarter of the bytes come back).
        """
        return self.submit(self.prepare(image, trimap, source), tiled, progress, as_uint8).result()


class OnnxMatter(Matter):
    """The same predictor running an exported ONNX graph (`dim export-onnx`) in onnxruntime on the CPU.

    Preprocessing, padding, tiling and postprocessing are the PyTorch path's; only the network differs.
    """

    def __init__(
        self,
        path: Path,
        tile_size: int = DEFAULT_TILE_SIZE,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        tile_threshold: int | str | None = "auto",
    ) -> None:
        import onnxruntime as ort

        self._set_tiling(tile_size, tile_overlap, tile_threshold)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise CheckpointError(
                f"{path}: onnxruntime cannot load it ({type(exc).__name__}); re-create it with dim export-onnx"
            ) from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if "dimatting_refine" not in meta:
            raise CheckpointError(f"{path}: not an ONNX file written by dim export-onnx; re-export the checkpoint")
        self._refines = meta["dimatting_refine"] == "1"
        self.preprocessor = MattorPreprocessor()
        self.device = torch.device("cpu")
        self.precision = "fp32"

    @property
    def refines(self) -> bool:
        return self._refines

    def run_network(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        trimaps = torch.from_numpy(np.ascontiguousarray(trimap))[None, None]
        with torch.inference_mode():
            x = reflect_pad_to_multiple(self.preprocessor(images, trimaps, bgr=False))
        out = self.session.run(None, {"x": x.numpy()})[0]
        return out[0, 0, : trimap.shape[0], : trimap.shape[1]]

    def _submit_whole(self, pair: PreparedPair, as_uint8: bool) -> PendingAlpha:
        alpha = postprocess(self.run_network(pair.image, pair.trimap), pair.trimap)
        return PendingAlpha(alpha_to_uint8(alpha) if as_uint8 else alpha)


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "auto",
    **options: object,
) -> Matter:
    """Load a DIM checkpoint (mmagic, ours, plain state dict, .safetensors; or .onnx) for prediction.

    `path` is a file, an http(s)/file URL or a released model's name (`dim models`); URLs and names are
    downloaded once into torch.hub's cache (`dimatting.hub`). The stage follows from the weights: refiner
    keys -> stage 2/3 model whose prediction is the refined alpha; backbone keys only -> stage 1. `options` go
    to `Matter` (tile_size, tile_threshold, precision, channels_last, conv_backend, compile); precision
    defaults to the device's reference numerics (tf32 on CUDA, fp32 on the CPU).
    """
    torch_device = resolve_device(device)
    path = resolve_checkpoint(path)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX file not found; check the path")
        if torch_device.type != "cpu" or options.get("precision") not in (None, "fp32") or options.get("compile"):
            raise InputError(
                f"{path}: ONNX models run in fp32 on the CPU here; use --device cpu, no --precision or --compile"
            )
        tiling = {k: v for k, v in options.items() if k.startswith("tile_")}
        return OnnxMatter(path, **tiling)
    state = extract_state_dict(load_checkpoint(path), path)
    with_refiner = any(k.startswith("refiner.") for k in state)
    model = build_dim(with_refiner=with_refiner)
    missing, _ = load_weights(model, {"state_dict": state}, source=path)
    if missing:
        raise CheckpointError(
            f"{path}: incomplete DIM weights, {len(missing)} missing (e.g. {missing[0]}); "
            "pass a trained DIM checkpoint (iter_*.pth / best_*.pth)"
        )
    matter = Matter(model, torch_device, **options)
    logger.info("%s: DIM stage %s weights on %s, %s", path, "2/3 (refiner)" if with_refiner else "1",
                torch_device, PRECISION_NOTES[matter.precision])
    return matter
