"""One-byte pooling positions: the same maxima and the same unpooled maps as PyTorch's int64 indices."""

from __future__ import annotations

from collections.abc import Iterator

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


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    """No compiled code, guards or recompile counts shared with other tests."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _signed_input(dtype: torch.dtype, layout: torch.memory_format) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled values of both signs with -0.0, inf and NaN among them, and every window position."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 6, 10, generator=generator).to(dtype)
    x[0, 0, 0, :4] = torch.tensor([-0.0, float("inf"), float("-inf"), float("nan")], dtype=dtype)
    which = torch.randint(0, 4, x.shape, generator=generator, dtype=torch.uint8)
    return x.contiguous(memory_format=layout), which.contiguous(memory_format=layout)


@pytest.mark.slow  # an Inductor compilation per case, ~2 s each (~6 s for the first) on 2 CPU cores
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_compiled_unpool_equals_the_eager_one_bit_for_bit(dtype, layout, fresh_dynamo):
    """Under torch.compile (Inductor, C++ on the CPU) unpooling takes its traceable formulation, in one graph
    (fullgraph=True fails on any graph break): the same bits and the same memory format as eagerly."""
    x, which = _signed_input(dtype, layout)
    eager = max_unpool2x2(x, which)
    compiled = torch.compile(max_unpool2x2, fullgraph=True, dynamic=False)(x, which)
    assert compiled.dtype == dtype and compiled.shape == (2, 3, 12, 20)
    assert compiled.is_contiguous(memory_format=layout) and compiled.stride() == eager.stride()
    assert torch.equal(_bits(compiled), _bits(eager))


def test_unpool_traces_without_graph_breaks(fresh_dynamo):
    """Dynamo cannot trace `where(out=...)` into a strided view; the traced path must not use it."""
    x, which = _signed_input(torch.float32, torch.channels_last)
    explained = torch._dynamo.explain(max_unpool2x2)(x, which)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
