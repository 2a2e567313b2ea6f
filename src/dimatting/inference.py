"""Prediction: checkpoint -> `Matter` -> alpha, on the reference's test-time path.

The path (golden README steps 1-7): RGB image normalised with ImageNet mean/std (0-255 scale) plus
trimap/255 -> reflect-pad bottom/right to a multiple of 32 -> encoder-decoder (+ refiner for stage 2/3
checkpoints) -> crop back -> clamp, 0/1 where the trimap is known. Large images go through overlapping
tiles (`dimatting.tiling`) so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dimatting import nnpack
from dimatting.checkpoint import extract_state_dict, load_checkpoint, load_weights
from dimatting.errors import CheckpointError, InputError
from dimatting.hub import resolve_checkpoint
from dimatting.io import normalize_trimap
from dimatting.models import DIM, MattorPreprocessor, build_dim
from dimatting.models.dim import reflect_pad_to_multiple
from dimatting.tiling import (
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
    DEFAULT_TILE_THRESHOLD,
    predict_tiled,
    tile_windows,
)

logger = logging.getLogger("dimatting.inference")

PRECISIONS = ("fp32", "tf32", "bf16")
# On a GPU whole images run while the pass fits in half the free memory: a stage-3 fp32 pass (NCHW, inference
# mode) peaks at 0.8-1.0 KB per pixel on an H200, 1.3 KB with tf32 (benchmarks/results.md, GPU); 2 KB leaves margin.
CUDA_BYTES_PER_PIXEL = 2048


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


class Matter:
    """A loaded DIM ready to predict alphas. Build it with `load_model`.

    `tile_threshold`: images with more pixels are tiled (`tile_size`, `tile_overlap`); None never tiles;
    "auto" (default): 1024x1024 on the CPU (memory), on a GPU whatever fits in half its free memory (tiles
    cost time there and only save memory). `channels_last` stores activations NHWC, which oneDNN convolves
    faster; its float rounding differs slightly, which can flip near-tied max-pool windows, mostly in known
    regions that the trimap overwrites anyway. False is the reference's NCHW layout: raw output bit-identical
    to mmagic's on the golden inputs. None (default): NHWC on the CPU with oneDNN, NCHW with NNPACK and on CUDA
    (cuDNN's fp32 NCHW kernels were faster there, with less memory). `conv_backend` (CPU, fp32): "nnpack"
    runs the 3x3/5x5 convolutions as Winograd/FFT transforms (`dimatting.nnpack`), "onednn" as PyTorch's
    default direct convolutions; "auto" (default) picks NNPACK on AVX2 CPUs without AVX-512 unless a layout
    is given. `precision='bf16'` runs convolutions under bfloat16 autocast (faster on CPUs with AVX512-BF16/AMX
    and on GPUs; alphas differ from fp32, see benchmarks/results.md); 'tf32' (CUDA only) lets cuDNN use TF32
    tensor cores, PyTorch's default and so what mmagic runs on a GPU; 'fp32' keeps fp32 convolutions exact there.
    """

    def __init__(
        self,
        model: DIM,
        device: torch.device,
        tile_size: int = DEFAULT_TILE_SIZE,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        tile_threshold: int | str | None = "auto",
        precision: str = "fp32",
        channels_last: bool | None = None,
        conv_backend: str = "auto",
    ) -> None:
        if precision not in PRECISIONS:
            raise InputError(f"--precision {precision}: unknown; use one of {', '.join(PRECISIONS)}")
        if precision == "tf32" and device.type != "cuda":
            raise InputError("--precision tf32: TF32 is a CUDA tensor-core format; on the CPU use fp32 or bf16")
        self._set_tiling(tile_size, tile_overlap, tile_threshold)
        self.model = model.eval().to(device)
        self.device = device
        self.precision = precision
        self.conv_backend = nnpack.choose(conv_backend, device, precision, layout_requested=channels_last is not None)
        if self.conv_backend == "nnpack":
            nnpack.use_nnpack(self.model)
        self.channels_last = (device.type == "cpu" and self.conv_backend == "onednn" if channels_last is None
                              else channels_last)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

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
            if self.device.type == "cuda":  # free memory now, not at load time: other processes share the GPU
                threshold = max(threshold, torch.cuda.mem_get_info(self.device)[0] // 2 // CUDA_BYTES_PER_PIXEL)
        return threshold is not None and height * width > threshold

    def _numerics(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when asked; on CUDA, fp32 convolutions in true fp32 (cuDNN's TF32 default rounds
        inputs to 10-bit mantissas, enough to flip many max-pool windows)."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        if self.device.type == "cuda":
            return torch.backends.cudnn.flags(enabled=True, allow_tf32=self.precision == "tf32")
        return contextlib.nullcontext()

    def run_network(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        """One whole-image pass (RGB uint8 HxWx3, trimap uint8 HxW) -> float32 HxW before postprocessing."""
        images = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        trimaps = torch.from_numpy(np.ascontiguousarray(trimap))[None, None]
        with torch.inference_mode(), self._numerics():
            x = self.model.data_preprocessor(images.to(self.device), trimaps.to(self.device), bgr=False)
            # the HxWx3 image arrives with NHWC strides; without this the "NCHW" path would convolve NHWC
            x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
            out = self.model.predict(x)[0, 0]
        return out.float().cpu().numpy()

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

    def predict(
        self,
        image: np.ndarray,
        trimap: np.ndarray,
        tiled: bool | None = None,
        progress: Callable[[int], None] | None = None,
        source: object = "trimap",
    ) -> np.ndarray:
        """Alpha float32 HxW in [0, 1] for an RGB (or gray/RGBA) uint8 image and a uint8 trimap.

        Exactly 0/1 where the trimap is 0/255. A trimap without unknown pixels gives trimap/255 (warning).
        `source` names the trimap in messages.
        """
        image = as_rgb(image)
        trimap = as_trimap(trimap, source=source)
        if image.shape[:2] != trimap.shape:
            raise InputError(
                f"{source}: size {trimap.shape[1]}x{trimap.shape[0]} does not match the image "
                f"({image.shape[1]}x{image.shape[0]}, WxH); resize it to match"
            )
        if not (trimap == 128).any():
            logger.warning("%s: no unknown pixels, so the alpha is the trimap (nothing to predict)", source)
            return trimap.astype(np.float32) / np.float32(255.0)
        return postprocess(self.predict_raw(image, trimap, tiled=tiled, progress=progress), trimap)


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


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "auto",
    **options: object,
) -> Matter:
    """Load a DIM checkpoint (mmagic, ours, plain state dict, .safetensors; or .onnx) for prediction.

    `path` is a file, an http(s)/file URL or a released model's name (`dim models`); URLs and names are
    downloaded once into torch.hub's cache (`dimatting.hub`). The stage follows from the weights: refiner
    keys -> stage 2/3 model whose prediction is the refined alpha; backbone keys only -> stage 1. `options` go
    to `Matter` (tile_size, tile_threshold, precision...).
    """
    torch_device = resolve_device(device)
    path = resolve_checkpoint(path)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise CheckpointError(f"{path}: ONNX file not found; check the path")
        if torch_device.type != "cpu" or options.get("precision", "fp32") != "fp32":
            raise InputError(f"{path}: ONNX models run in fp32 on the CPU here; use --device cpu, no --precision")
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
    logger.info("%s: DIM stage %s weights on %s", path, "2/3 (refiner)" if with_refiner else "1", torch_device)
    return Matter(model, torch_device, **options)
