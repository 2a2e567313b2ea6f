"""The lean test-time forward: DIM.predict's output bit for bit in fp32, in much less memory."""

from __future__ import annotations

import pytest
import torch

from dimatting.models import build_dim
from dimatting.models.dim import reflect_pad_to_multiple
from dimatting.models.lean_forward import LeanForward, to_bf16
from tests.live_bytes import LiveBytes

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))


def _model(refine: bool, layout=torch.contiguous_format):
    torch.manual_seed(0)
    return build_dim(with_refiner=refine).eval().to(memory_format=layout)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fp32_equals_dim_predict_bit_for_bit(refine, layout, device):
    """Same convolutions on the same tensors (cuDNN with TF32 off on CUDA), so the same bits."""
    model = _model(refine, layout).to(device)
    x = torch.randn(1, 4, 70, 90, generator=torch.Generator().manual_seed(1)).to(device)
    x = x.contiguous(memory_format=layout)
    with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        expected = model.predict(x)
        out = LeanForward(model)(reflect_pad_to_multiple(x))[..., :70, :90]
    assert out.dtype == torch.float32
    assert torch.equal(out, expected)


@pytest.mark.parametrize("strip_pixels", [2 * 64, 10 * 64, 30 * 64, 96 * 64])
def test_first_block_in_strips_equals_the_whole_block(strip_pixels):
    """Strips of 2, 10, 30 rows (the last one shorter) and one strip: the halo rows and the image's zero
    padding above and below are the whole-image convolution's, up to fp32 summation order."""
    model = _model(refine=True)
    x = torch.randn(1, 4, 96, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        whole = LeanForward(model)(x)
        strips = LeanForward(model, precise_first_block=True, strip_pixels=strip_pixels)(x)
    torch.testing.assert_close(strips, whole, rtol=0, atol=1e-5)


def test_peak_memory_is_two_full_resolution_maps_plus_what_must_survive():
    """Peak bytes per pixel, modelled exactly on the meta device: two 64-channel maps at full resolution
    (512 B in fp32, 256 B in bf16) plus the input and the logits; DIM.predict holds ~60% more. At 4096x4096,
    so that the bf16 path's fp32 first block runs in several strips."""
    size = 4096
    meta = build_dim(with_refiner=True).eval().to("meta")
    with torch.inference_mode(), LiveBytes() as live:
        meta.predict(torch.empty((1, 4, size, size), device="meta"))
    assert live.peak / size**2 > 800
    fp32 = _lean_peak(meta, size, bf16=False)
    assert 512 < fp32 <= 512 + 16 + 8
    bf16 = _lean_peak(to_bf16(meta).to(memory_format=torch.channels_last), size, bf16=True)
    assert 256 < bf16 <= 256 + 16 + 8


def _lean_peak(model, size: int, bf16: bool) -> float:
    network = LeanForward(model, precise_first_block=bf16)
    layout = torch.channels_last if bf16 else torch.contiguous_format
    with torch.inference_mode(), LiveBytes() as live:
        x = torch.empty((1, 4, size, size), device="meta").contiguous(memory_format=layout)
        out = network(x)
        del x, out
    return live.peak / size**2


def test_bf16_forward_traces_as_one_graph():
    """torch.compile sees the whole bf16 forward (first block in strips, one-byte unpooling) as one graph: no
    graph break, so "reduce-overhead" makes one CUDA graph of it. Dynamo only (explain), no Inductor."""
    model = to_bf16(_model(refine=True)).to(memory_format=torch.channels_last)
    network = LeanForward(model, precise_first_block=True, strip_pixels=32 * 64)  # two strips
    x = torch.randn(1, 4, 64, 64).contiguous(memory_format=torch.channels_last)
    torch._dynamo.reset()
    try:
        with torch.inference_mode():
            explained = torch._dynamo.explain(network)(x)
    finally:
        torch._dynamo.reset()
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_to_bf16_keeps_the_precise_parts_in_fp32():
    original = _model(refine=True).state_dict()
    model = to_bf16(_model(refine=True))
    fp32 = {name for name, p in model.named_parameters() if p.dtype == torch.float32}
    assert all(torch.equal(model.state_dict()[name], original[name]) for name in fp32)  # not rounded on the way
    assert fp32 == {f"backbone.encoder.layer1.{i}.{k}" for i in (0, 2) for k in ("weight", "bias")} | {
        "backbone.decoder.deconv1.weight", "backbone.decoder.deconv1.bias",
        "refiner.refine_pred.weight", "refiner.refine_pred.bias"}
    assert model.data_preprocessor.mean.dtype == torch.float32
    assert all(p.dtype in (torch.float32, torch.bfloat16) for p in model.parameters())


def test_unsupported_models_are_refused():
    model = _model(refine=False)
    model.backbone.decoder = torch.nn.Identity()
    with pytest.raises(TypeError, match="VGG16 encoder, PlainDecoder"):
        LeanForward(model)
