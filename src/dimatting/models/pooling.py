"""2x2 max-pooling that remembers *which* of the four window pixels won in one byte, and its unpooling.

`F.max_pool2d(return_indices=True)` stores an int64 flat index per pooled value. In DIM's encoder those
indices take 8 bytes x (64/4 + 128/16 + 256/64 + 512/256 + 512/1024) = 244 bytes per input pixel, as much as
the largest activation pair they sit beside (a 4096x4096 image: 3.8 GiB of indices). The decoder only needs
the winner's position inside its 2x2 window, so here it is kept as a uint8 in {0, 1, 2, 3} (row-major:
top-left, top-right, bottom-left, bottom-right): 8x less. Values are identical to PyTorch's: the pooled
maximum is exact, ties go to the first window pixel in that order (PyTorch's CPU and CUDA kernels scan
the same way), and unpooling writes the value there and +0.0 elsewhere, as `F.max_unpool2d` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _phases(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four strided views x[..., dy::2, dx::2] (no copies), in window order."""
    return x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]


def max_pool2x2(x: Tensor) -> tuple[Tensor, Tensor]:
    """N×C×H×W (H, W even) -> (N×C×H/2×W/2 maxima in x's dtype and memory format, uint8 window position)."""
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise ValueError(f"max_pool2x2 needs an even height and width, got {tuple(x.shape[-2:])}")
    pooled = F.max_pool2d(x, 2, 2)
    a, b, c, _ = _phases(x)
    # first winner in window order: assign the later positions first so earlier ones overwrite them
    which = torch.full_like(pooled, 3, dtype=torch.uint8)
    which.masked_fill_(c == pooled, 2)
    which.masked_fill_(b == pooled, 1)
    which.masked_fill_(a == pooled, 0)
    return pooled, which


def max_unpool2x2(x: Tensor, which: Tensor) -> Tensor:
    """Inverse of `max_pool2x2`: N×C×h×w values -> N×C×2h×2w, each value at its window position, zeros elsewhere.

    The output has x's memory format (channels_last stays channels_last). Two formulations of the same
    values, bit for bit: eagerly, each phase `out[..., dy::2, dx::2]` is written in place by `where(out=...)`,
    so nothing but the output and a one-byte mask at the input's size is allocated (the memory model,
    benchmarks/memory_model.py, counts exactly that); under torch.compile, where Dynamo cannot trace `out=`
    into a strided view (each unpooling would break the graph, and CUDA graphs with it), `_unpool_traceable`.
    """
    layout = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) else None
    if torch.compiler.is_compiling():
        return _unpool_traceable(x, which, layout or torch.contiguous_format)
    out = torch.empty((*x.shape[:-2], 2 * x.shape[-2], 2 * x.shape[-1]), dtype=x.dtype, device=x.device,
                      memory_format=layout or torch.contiguous_format)
    zero = x.new_zeros(())
    for position, phase in enumerate(_phases(out)):
        torch.where(which == position, x, zero, out=phase)  # every output pixel is written by exactly one phase
    return out


def _unpool_traceable(x: Tensor, which: Tensor, layout: torch.memory_format) -> Tensor:
    """`max_unpool2x2` for torch.compile: one `where` broadcast over the output seen as ...×h×2×w×2, which
    Inductor fuses into a single kernel that writes only the output. Run eagerly it would materialise an
    output-sized mask (and, for channels_last, a second copy of the output), hence not used there."""
    position = torch.arange(4, dtype=torch.uint8, device=x.device).view(2, 1, 2)  # [dy, 0, dx] = 2 dy + dx
    out = torch.where(which[..., None, :, None] == position, x[..., None, :, None], x.new_zeros(()))
    return out.reshape(*x.shape[:-2], 2 * x.shape[-2], 2 * x.shape[-1]).contiguous(memory_format=layout)
