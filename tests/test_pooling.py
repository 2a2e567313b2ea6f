"""One-byte pooling positions: the same maxima and the same unpooled maps as PyTorch's int64 indices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dimatting.models.pooling import max_pool2x2, max_unpool2x2

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_pool_and_unpool_equal_pytorch_bit_for_bit_with_ties(dtype, layout, device):
    """ReLU zeros make many tied windows (all four equal, or two): PyTorch keeps the first in scan order,
    on the CPU and on CUDA."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 8, 12, generator=generator).to(dtype)
    x[0, 0, :2, :2] = 1.0  # four-way tie
    x[0, 1, 2:4, 2:4] = torch.tensor([[0.5, -1.0], [0.5, 0.25]], dtype=dtype)  # tie between positions 0 and 2
    x = F.relu(x).to(device).contiguous(memory_format=layout)
    pooled, which = max_pool2x2(x)
    ref_pooled, indices = F.max_pool2d(x, 2, 2, return_indices=True)
    assert pooled.dtype == dtype and which.dtype == torch.uint8 and which.shape == pooled.shape
    assert pooled.is_contiguous(memory_format=layout)
    assert torch.equal(_bits(pooled), _bits(ref_pooled))
    assert which[0, 0, 0, 0] == 0 and which[0, 1, 1, 1] == 0
    unpooled = max_unpool2x2(pooled, which)
    assert unpooled.is_contiguous(memory_format=layout)
    assert torch.equal(_bits(unpooled), _bits(F.max_unpool2d(ref_pooled, indices, 2, 2)))


def test_positions_are_window_relative():
    """The winner's place inside its own 2x2 window, row-major, whatever the window's place in the map."""
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 1] = 1.0  # top-left window, top-right pixel
    x[0, 0, 1, 2] = 1.0  # top-right window, bottom-left pixel
    x[0, 0, 3, 1] = 1.0  # bottom-left window, bottom-right pixel
    _, which = max_pool2x2(x)  # the bottom-right window is a four-way tie of zeros: the first
    assert which[0, 0].tolist() == [[1, 2], [3, 0]]


def test_odd_sizes_are_refused():
    with pytest.raises(ValueError, match="even height and width"):
        max_pool2x2(torch.zeros(1, 1, 5, 4))
