"""NNPACK convolutions for fp32 prediction on AVX2 CPUs: Winograd/FFT transforms instead of direct convolution.

DIM's forward is ~1.4 TFLOP at 1024², nearly all of it in 3x3 (VGG16 encoder, refiner) and 5x5 (decoder)
convolutions. oneDNN runs those as direct convolutions, already near the 2-core AVX2 peak here, so fp32 can
only get faster with fewer multiplications: NNPACK (bundled with PyTorch's x86 and ARM builds) picks a
Winograd F(6x6, 3x3) or FFT algorithm per layer, which needs 2-5x fewer. Its rounding differs from a direct
convolution by ~1e-5 relative per layer; on the golden inputs the final alphas differ from the reference
path's less than with oneDNN's channels-last layout (benchmarks/results.md, Predict). NNPACK uses AVX2/FMA
(256-bit) only: on CPUs with AVX-512 oneDNN's kernels are twice as wide, so `auto` keeps oneDNN there.

PyTorch reaches NNPACK through a private operator (`torch._nnpack_spatial_convolution`, used by its own
convolution dispatch for batches of 16 and more); `available()` checks for it, so a PyTorch without it
falls back to oneDNN.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dimatting.errors import InputError

CONV_BACKENDS = ("auto", "nnpack", "onednn")


def available() -> bool:
    """True when this PyTorch has NNPACK and it initialised on this CPU (it needs AVX2 + FMA on x86)."""
    return hasattr(torch, "_nnpack_spatial_convolution") and bool(torch._nnpack_available())


def preferred() -> bool:
    """`auto`'s choice: NNPACK where it is available and the CPU has no AVX-512 (see the module doc)."""
    capability = torch.backends.cpu.get_cpu_capability().upper()
    return available() and not capability.startswith("AVX512") and "AMX" not in capability


def choose(requested: str, device: torch.device, precision: str, layout_requested: bool) -> str:
    """The convolution backend of a predictor: NNPACK only for fp32 on the CPU in its own NCHW layout; an
    explicit memory layout (channels-last, or the reference's NCHW, which promises oneDNN's arithmetic bit for
    bit) asks for oneDNN. `auto` takes NNPACK where `preferred()`."""
    if requested not in CONV_BACKENDS:
        raise InputError(f"--conv-backend {requested}: unknown; use one of {', '.join(CONV_BACKENDS)}")
    fits = device.type == "cpu" and precision == "fp32" and not layout_requested
    if requested == "nnpack":
        if not fits:
            raise InputError("--conv-backend nnpack: NNPACK runs fp32 NCHW convolutions on the CPU only; drop "
                             "--precision/--reference-layout or use --device cpu")
        if not available():
            raise InputError("--conv-backend nnpack: this PyTorch or CPU has no NNPACK (it needs AVX2 + FMA); "
                             "use --conv-backend onednn")
        return "nnpack"
    return "nnpack" if requested == "auto" and fits and preferred() else "onednn"


class NnpackConv2d(nn.Module):
    """A stride-1, undilated, ungrouped Conv2d run by NNPACK; shares the original layer's parameters."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        pad_h, pad_w = conv.padding
        self.padding = [pad_w, pad_w, pad_h, pad_h]  # NNPACK's order: left, right, top, bottom

    def forward(self, x: Tensor) -> Tensor:
        return torch._nnpack_spatial_convolution(x.contiguous(), self.weight, self.bias, self.padding)


def _eligible(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and type(conv) is nn.Conv2d and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and max(conv.kernel_size) > 1)


def use_nnpack(model: nn.Module) -> int:
    """Run the model's spatial convolutions (kernel > 1) with NNPACK; returns how many layers now do.

    1x1 convolutions stay (no transform saves anything there). The model must then run in NCHW, fp32.
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _eligible(child):
                setattr(parent, name, NnpackConv2d(child))
                replaced += 1
    return replaced
