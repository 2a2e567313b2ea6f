"""Running the prediction network fast: optional torch.compile, TF32 switches, asynchronous GPU results.

The CUDA-only parts are here, small, and each has a CPU meaning: on the CPU a result is ready at once,
there is no TF32 and no memory to query; torch.compile works on both (Inductor generates C++ on the CPU).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch

logger = logging.getLogger("dimatting.inference")

# torch.compile modes: "reduce-overhead" adds CUDA graphs, "max-autotune" also benchmarks kernels (slow start)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def compile_mode(compile: bool | str | None) -> str | None:
    """`compile` as given to `Matter` (False/None: off, True: "default", or a torch.compile mode) -> mode."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return "default"
    if compile not in COMPILE_MODES:
        from dimatting.errors import InputError

        raise InputError(f"--compile {compile}: unknown mode; use one of {', '.join(COMPILE_MODES)}")
    return str(compile)


class CompiledOrEager:
    """`fn` through torch.compile when a mode is given (one graph per input shape, compiled on first use).

    If compiling fails (no C++ compiler or Triton on this machine, an unsupported PyTorch), the failure is
    logged once and `fn` runs eagerly from then on: compilation is an optimisation, never a reason to stop.
    Running out of memory is not a compilation failure and is raised as is.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], mode: str | None) -> None:
        self.fn = fn
        self.mode = mode
        self.compiled = torch.compile(fn, mode=mode, dynamic=False) if mode else None

    def __call__(self, *args: object) -> torch.Tensor:
        if self.compiled is not None:
            try:
                if self.mode in CUDA_GRAPH_MODES:  # the previous call's outputs (already copied out) may be reused
                    torch.compiler.cudagraph_mark_step_begin()
                return self.compiled(*args)
            except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError (2.5+) on CUDA
                raise
            except Exception as exc:  # Dynamo/Inductor raise many backend-specific types
                first_line = (str(exc).strip().splitlines() or [""])[0][:200]
                logger.warning("torch.compile (mode %s) failed, running uncompiled: %s: %s",
                               self.mode, type(exc).__name__, first_line)
                self.compiled = None
        return self.fn(*args)


@contextlib.contextmanager
def tf32_allowed(allowed: bool) -> Iterator[None]:
    """Allow or forbid TF32 for CUDA convolutions and matmuls inside the block (restored afterwards).

    PyTorch's defaults are TF32 convolutions on, TF32 matmuls off; "tf32" turns both on (Inductor may lower
    1x1 convolutions to matmuls), "fp32" both off: IEEE fp32 everywhere.
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:  # only these two switches: a caller's cudnn.benchmark or deterministic settings stay as they are
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def cuda_available_bytes(device: torch.device) -> int:
    """Bytes this process can still use on `device`: the driver's free memory plus what PyTorch's caching
    allocator holds but does not use (after one large image the cache would otherwise look like use)."""
    free = torch.cuda.mem_get_info(device)[0]
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def cpu_has_fast_bf16() -> bool:
    """Whether PyTorch's oneDNN has bfloat16 convolution kernels for this CPU (AVX-512 and up); elsewhere
    (AVX2) bf16 convolutions fall back to reference loops 10-100x slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def pinned(array: np.ndarray) -> torch.Tensor:
    """A page-locked host copy of `array`, so that its upload can run asynchronously (and faster)."""
    return torch.from_numpy(np.ascontiguousarray(array)).pin_memory()


class PendingAlpha:
    """An alpha that may still be on its way back from the GPU; `result()` waits for it.

    Returning before the copy finishes lets the caller queue the next image first, so the GPU never waits
    for the host between images.
    """

    def __init__(self, value: np.ndarray | torch.Tensor, event: torch.cuda.Event | None = None) -> None:
        self._value = value
        self._event = event

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor) -> PendingAlpha:
        """Start copying a device tensor to the host (pinned memory, asynchronous on CUDA)."""
        if tensor.device.type != "cuda":
            return cls(tensor.cpu().numpy())
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)  # queued on the current stream of the tensor's own GPU
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(tensor.device))  # that stream, not cuda:0's (--device cuda:1)
        return cls(host, event)

    def result(self) -> np.ndarray:
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        if isinstance(self._value, torch.Tensor):
            self._value = self._value.numpy()
        return self._value
