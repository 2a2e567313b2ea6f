"""Prediction API: golden parity with mmagic, input handling, stage detection, tiling."""

from __future__ import annotations

import itertools
import logging
import math

import cv2
import numpy as np
import pytest
import torch

from dimatting import nnpack
from dimatting.checkpoint import save_checkpoint, save_safetensors
from dimatting.errors import CheckpointError, InputError
from dimatting.inference import (
    CUDA_BYTES_PER_PIXEL,
    Matter,
    alpha_to_uint8,
    as_trimap,
    default_precision,
    load_model,
    postprocess,
    resolve_device,
)
from dimatting.io import read_gray, read_image, read_trimap
from dimatting.models import build_dim
from dimatting.tiling import predict_tiled, tile_starts, tile_windows
from dimatting.trimap import trimap_from_mask
from tests.golden_weights import golden_model

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))


@pytest.fixture(autouse=True)
def _propagate_logs(monkeypatch):
    """caplog listens on the root logger; the CLI (if another test ran it) may have stopped propagation."""
    monkeypatch.setattr(logging.getLogger("dimatting"), "propagate", True)


@pytest.fixture(scope="module")
def golden_ckpts(golden_dir, tmp_path_factory):
    """mmagic-shaped checkpoint files (meta + state_dict) holding the golden weights, stage 1 and 3."""
    out = tmp_path_factory.mktemp("golden_ckpts")
    paths = {}
    for stage in (1, 3):
        paths[stage] = out / f"stage{stage}.pth"
        save_checkpoint(paths[stage], {"meta": {"iter": 0}, "state_dict": golden_model(golden_dir, stage).state_dict()})
    return paths


def golden_inputs(golden_dir, name):
    return (read_image(golden_dir / "inputs" / f"{name}_merged.png"),
            read_trimap(golden_dir / "inputs" / f"{name}_trimap.png"))


def assert_close_to_golden(ours: np.ndarray, golden: np.ndarray) -> None:
    """Golden README tolerance: max-pool near-ties may flip a few windows, so median and fraction, not max."""
    diff = np.abs(ours.astype(np.float64) - golden)
    assert ours.shape == golden.shape
    assert np.median(diff) < 1e-6
    assert (diff <= 1e-5).mean() >= 0.95


@pytest.mark.parametrize("stage", [1, 3])
@pytest.mark.parametrize("name", ["crop157x211", pytest.param("gt05", marks=pytest.mark.slow)])
@pytest.mark.parametrize("layout", ["channels_last", "nchw"])
def test_golden_parity(golden_dir, golden_ckpts, stage, name, layout):
    """Raw output on every pixel with oneDNN off (the arithmetic that does not depend on the CPU's vector
    units); the default oneDNN path (either layout), whose kernels differ between AVX2 and AVX-512 CPUs and flip
    near-tied max-pool windows in flat known regions (up to ~11% of GT05's pixels on an AVX2 EPYC), on the
    unknown region, and its final alpha on all pixels."""
    matter = load_model(golden_ckpts[stage], device="cpu", channels_last=layout == "channels_last")
    assert matter.refines == (stage == 3)
    image, trimap = golden_inputs(golden_dir, name)
    golden = np.load(golden_dir / "outputs" / f"{name}_stage{stage}.npy")
    if layout == "nchw":
        with torch.backends.mkldnn.flags(enabled=False):
            assert_close_to_golden(matter.predict_raw(image, trimap, tiled=False), golden)
    raw = matter.predict_raw(image, trimap, tiled=False)
    assert raw.dtype == np.float32
    unknown = trimap == 128
    assert_close_to_golden(raw[unknown], golden[unknown])
    alpha = matter.predict(image, trimap)
    assert alpha.dtype == np.float32 and alpha.min() >= 0 and alpha.max() <= 1
    assert (alpha[trimap == 255] == 1).all() and (alpha[trimap == 0] == 0).all()
    png = alpha_to_uint8(alpha).astype(np.int16)
    golden_png = read_gray(golden_dir / "outputs" / f"{name}_stage{stage}.png").astype(np.int16)
    diff = np.abs(png - golden_png)
    assert (diff == 0).mean() >= 0.95 and np.median(diff) == 0


def test_safetensors_and_plain_state_dict_load_the_same_model(golden_dir, golden_ckpts, tmp_path):
    state = golden_model(golden_dir, 1).state_dict()
    save_safetensors(tmp_path / "stage1.safetensors", state)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "plain.pth")
    image, trimap = golden_inputs(golden_dir, "crop157x211")
    expected = load_model(golden_ckpts[1], "cpu").predict(image, trimap)
    for name in ("stage1.safetensors", "plain.pth"):
        np.testing.assert_array_equal(load_model(tmp_path / name, "cpu").predict(image, trimap), expected)


def test_incomplete_or_foreign_checkpoints_are_refused(tmp_path):
    state = build_dim(with_refiner=False).state_dict()
    state.pop("backbone.decoder.deconv1.bias")
    save_checkpoint(tmp_path / "partial.pth", {"state_dict": state})
    with pytest.raises(CheckpointError, match=r"partial\.pth: incomplete DIM weights.*deconv1\.bias"):
        load_model(tmp_path / "partial.pth", "cpu")
    save_checkpoint(tmp_path / "other.pth", {"state_dict": {"fc.weight": torch.zeros(2, 2)}})
    with pytest.raises(CheckpointError, match=r"other\.pth: none of its 1 tensors"):
        load_model(tmp_path / "other.pth", "cpu")


def test_gray_rgba_and_3channel_trimap_inputs(golden_dir, golden_ckpts):
    matter = load_model(golden_ckpts[1], "cpu")
    image, trimap = golden_inputs(golden_dir, "crop157x211")
    rgba = np.dstack([image, np.full(trimap.shape, 200, np.uint8)])
    tri3 = np.dstack([trimap] * 3)
    expected = matter.predict(image, trimap)
    np.testing.assert_array_equal(matter.predict(rgba, tri3), expected)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(matter.predict(gray, trimap), matter.predict(np.dstack([gray] * 3), trimap))


def test_trimap_rules(golden_dir, golden_ckpts, caplog):
    matter = load_model(golden_ckpts[1], "cpu")
    image, trimap = golden_inputs(golden_dir, "crop157x211")
    pymatting_style = np.where(trimap == 128, 102, trimap).astype(np.uint8)
    with caplog.at_level(logging.WARNING):
        np.testing.assert_array_equal(matter.predict(image, pymatting_style), matter.predict(image, trimap))
    assert "102 mapped to 128" in caplog.text
    stray = trimap.copy()
    stray[:2, :3] = [[10, 20, 30], [40, 50, 60]]
    with pytest.raises(InputError, match="6 pixels with values outside"):
        matter.predict(image, stray)
    assert (as_trimap(stray, tolerant=True)[:2, :3] == [[0, 0, 0], [0, 0, 0]]).all()
    with pytest.raises(InputError, match="does not match the image"):
        matter.predict(image, trimap[:-1])


def test_no_unknown_pixels_gives_trimap_with_warning(golden_dir, golden_ckpts, caplog):
    matter = load_model(golden_ckpts[3], "cpu")
    image, _ = golden_inputs(golden_dir, "crop157x211")
    known = np.zeros(image.shape[:2], np.uint8)
    known[40:90, 50:120] = 255
    with caplog.at_level(logging.WARNING):
        alpha = matter.predict(image, known)
    assert "no unknown pixels" in caplog.text
    np.testing.assert_array_equal(alpha, known / np.float32(255))


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="--device tpu: unknown device; use cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--device cuda: PyTorch sees no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_matches_golden_within_tolerance(golden_dir, golden_ckpts):
    matter = load_model(golden_ckpts[3], "cuda", precision="fp32")
    image, trimap = golden_inputs(golden_dir, "crop157x211")
    diff = np.abs(matter.predict_raw(image, trimap) - np.load(golden_dir / "outputs" / "crop157x211_stage3.npy"))
    assert np.median(diff) < 1e-4 and (diff <= 1e-3).mean() >= 0.95  # GPU convs round differently (TF32 off)


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("stage", [1, 3])
def test_device_postprocessing_equals_the_numpy_path_bit_for_bit(golden_dir, golden_ckpts, device, stage):
    """Clamp, trimap overwrite and the uint8 rounding run where the network ran; the result is the NumPy
    path's (`postprocess`, `alpha_to_uint8`) bit for bit, float or uint8, whole, tiled or without unknowns."""
    matter = load_model(golden_ckpts[stage], device, precision="fp32", tile_size=96, tile_overlap=32)
    image, trimap = golden_inputs(golden_dir, "crop157x211")
    expected = postprocess(matter.predict_raw(image, trimap, tiled=False), trimap)
    alpha = matter.predict(image, trimap, tiled=False)
    assert alpha.dtype == np.float32 and alpha.shape == trimap.shape
    np.testing.assert_array_equal(alpha, expected)
    alpha8 = matter.predict(image, trimap, tiled=False, as_uint8=True)
    assert alpha8.dtype == np.uint8
    np.testing.assert_array_equal(alpha8, alpha_to_uint8(expected))
    tiled = matter.predict(image, trimap, tiled=True)
    np.testing.assert_array_equal(matter.predict(image, trimap, tiled=True, as_uint8=True), alpha_to_uint8(tiled))
    known = np.where(trimap == 128, 0, trimap).astype(np.uint8)
    np.testing.assert_array_equal(matter.predict(image, known, as_uint8=True), known)


def test_prepare_then_submit_is_predict(golden_dir, golden_ckpts):
    """The folder pipeline's split: host checks (`prepare`, in loader threads), then `submit` and `result`."""
    matter = load_model(golden_ckpts[1], "cpu")
    image, trimap = golden_inputs(golden_dir, "crop157x211")
    pair = matter.prepare(np.dstack([image, np.full(trimap.shape, 255, np.uint8)]), trimap, source="t.png")
    assert pair.image.shape == image.shape and pair.staged is None and pair.source == "t.png"
    expected = matter.predict(image, trimap, as_uint8=True)
    np.testing.assert_array_equal(matter.submit(pair, as_uint8=True).result(), expected)
    with pytest.raises(InputError, match=r"t\.png: size 211x156 does not match the image \(211x157"):
        matter.prepare(image, trimap[:-1], source="t.png")


def test_precision_defaults_to_the_devices_reference_numerics(golden_ckpts, caplog, monkeypatch):
    assert default_precision(torch.device("cuda")) == "tf32" and default_precision(torch.device("cpu")) == "fp32"
    with caplog.at_level(logging.INFO):
        matter = load_model(golden_ckpts[1], "cpu")
    assert matter.precision == "fp32" and "weights on cpu, IEEE fp32" in caplog.text
    with pytest.raises(InputError, match="--precision fp16: unknown; use one of fp32, tf32, bf16"):
        load_model(golden_ckpts[1], "cpu", precision="fp16")
    for fast, warned in ((False, True), (True, False)):
        monkeypatch.setattr("dimatting.inference.cpu_has_fast_bf16", lambda fast=fast: fast)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert load_model(golden_ckpts[1], "cpu", precision="bf16").precision == "bf16"
        assert ("this CPU has no bfloat16 kernels" in caplog.text) == warned


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_defaults_and_memory_per_pixel(golden_dir, golden_ckpts, caplog):
    """TF32 by default (logged as the reference's GPU numerics); each precision's measured peak at 2048x2048
    stays under the `CUDA_BYTES_PER_PIXEL` that `--tile-threshold auto` plans with; fp32 is the reference path."""
    with caplog.at_level(logging.INFO):
        assert load_model(golden_ckpts[3], "cuda").precision == "tf32"
    assert "TF32 convolutions, PyTorch's CUDA default" in caplog.text
    image, trimap = golden_inputs(golden_dir, "gt05")
    image = cv2.resize(image, (2048, 2048), interpolation=cv2.INTER_LINEAR)
    trimap = cv2.resize(trimap, (2048, 2048), interpolation=cv2.INTER_NEAREST)
    for precision, per_pixel in CUDA_BYTES_PER_PIXEL.items():
        matter = load_model(golden_ckpts[3], "cuda", precision=precision, tile_threshold=None)
        matter.predict(image, trimap, as_uint8=True)  # cuDNN's first-call algorithm search
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        matter.predict(image, trimap, as_uint8=True)
        measured = (torch.cuda.max_memory_allocated() - base) / 2048**2
        print(f"{precision}: {measured:.0f} bytes per pixel at 2048x2048 (planned {per_pixel})")
        assert measured <= per_pixel
        del matter
        torch.cuda.empty_cache()


@pytest.mark.slow
def test_compiled_path_equals_the_eager_one(golden_dir, golden_ckpts):
    """torch.compile (Inductor; C++ on the CPU) of the whole device path, with bf16's first block in strips
    (and its one-byte pooling positions) forced on, in fp32 so that the comparison is exact; with oneDNN's
    convolutions, as bf16 runs them (NNPACK, the fp32 default on AVX2 CPUs, never runs the strips)."""
    image, trimap = golden_inputs(golden_dir, "crop157x211")
    alphas = []
    for compile_mode in (False, True):
        matter = load_model(golden_ckpts[3], "cpu", compile=compile_mode, conv_backend="onednn")
        matter.network.precise_first_block = True
        matter.network.strip_pixels = 64 * 224  # three strips
        alphas.append(matter.predict(image, trimap, as_uint8=True))
        if compile_mode:
            assert matter._alpha_fn.compiled is not None  # compiled, no fallback to eager
    np.testing.assert_array_equal(alphas[1], alphas[0])


def _quickly_trained_stage3(path):
    """A stage-3 DIM (encoder-decoder and refiner trained together) trained from scratch for 30 iterations
    on 32x32 synthetic composites, batch 8 (Kaiming init, Adam 5e-4, as the quickstart but smaller): its
    SAD is a fraction of the alpha=0.5 matte's, and it takes ~15 s on two cores."""
    from dimatting.data.synthetic import make_sample
    from dimatting.losses import CharbonnierCompLoss, CharbonnierLoss
    from dimatting.models import DIM, VGG16, MattorPreprocessor, PlainDecoder, PlainRefiner, SimpleEncoderDecoder

    torch.manual_seed(0)
    model = DIM(backbone=SimpleEncoderDecoder(VGG16(4), PlainDecoder(512)), refiner=PlainRefiner(),
                train_cfg={"train_backbone": True, "train_refiner": True}, test_cfg={"refine": True},
                loss_alpha=CharbonnierLoss(loss_weight=0.5), loss_comp=CharbonnierCompLoss(loss_weight=0.5),
                loss_refine=CharbonnierLoss())
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)
    samples = [make_sample(0, "test", 1000 + i, (32, 32)) for i in range(32)]
    batch = {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0]}
    batch = {k: v.permute(0, 3, 1, 2) if v.ndim == 4 else v[:, None] for k, v in batch.items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(30):
        pick = torch.from_numpy(rng.choice(len(samples), 8, replace=False))
        x = model.data_preprocessor(batch["merged"][pick], batch["trimap"][pick])
        gts = [MattorPreprocessor.gt_to_rgb01(batch[k][pick]) for k in ("alpha", "fg", "bg", "merged")]
        loss = sum(model.compute_losses(x, *gts).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_checkpoint(path, {"state_dict": model.state_dict()})
    return path


@pytest.mark.slow
def test_bf16_fast_path_accuracy_on_a_trained_checkpoint(tmp_path):
    """The fast path against IEEE fp32 on a trained stage-3 checkpoint: mean |Δα| over the unknown region
    <= 1/255 and SAD within 0.5% (benchmarks/bf16_accuracy.py measures the same on the quickstart's
    checkpoint, and on a GPU)."""
    from dimatting.data.synthetic import make_sample
    from dimatting.metrics import sad

    checkpoint = _quickly_trained_stage3(tmp_path / "stage3.pth")
    tests = [make_sample(0, "test", i, (96, 96)) for i in range(6)]
    fp32 = load_model(checkpoint, "cpu", precision="fp32", channels_last=False)
    bf16 = load_model(checkpoint, "cpu", precision="bf16")
    diffs, sads = [], {"fp32": 0.0, "bf16": 0.0, "half": 0.0}
    for sample in tests:
        image, trimap, gt = sample["merged"][:, :, ::-1], sample["trimap"], sample["alpha"]
        reference, fast = fp32.predict(image, trimap), bf16.predict(image, trimap)
        diffs.append(np.abs(fast - reference)[trimap == 128])
        sads["fp32"] += sad(reference, gt, trimap)
        sads["bf16"] += sad(fast, gt, trimap)
        sads["half"] += sad(np.where(trimap == 128, 0.5, trimap / 255), gt, trimap)
    mean_diff = float(np.concatenate(diffs).mean())
    change = sads["bf16"] / sads["fp32"] - 1
    print(f"bf16 vs fp32: mean |dalpha| {mean_diff * 255:.2f}/255, SAD {sads['bf16']:.4f} vs {sads['fp32']:.4f} "
          f"({change:+.3%}); alpha=0.5: {sads['half']:.4f}")
    assert sads["fp32"] < 0.5 * sads["half"]  # a trained model, not a constant
    assert mean_diff <= 1 / 255
    assert abs(change) <= 0.005


def test_layout_follows_the_device_and_reaches_the_network(golden_ckpts):
    """NHWC on the CPU with oneDNN, NCHW when asked; the network must see exactly that layout (the HxWx3 image
    arrives with NHWC strides and would otherwise carry them into the "NCHW" path)."""
    seen = []
    for channels_last, layout in ((None, torch.channels_last), (False, torch.contiguous_format)):
        matter = load_model(golden_ckpts[1], "cpu", channels_last=channels_last, conv_backend="onednn")
        assert matter.channels_last == (layout == torch.channels_last)
        first_conv = matter.model.backbone.encoder.layer1[0]
        hook = first_conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        matter.predict_raw(np.zeros((64, 96, 3), np.uint8), np.full((64, 96), 128, np.uint8), tiled=False)
        hook.remove()
        assert seen[-1].is_contiguous(memory_format=layout)
    with pytest.raises(InputError, match="--precision tf32: TF32 is a CUDA tensor-core format"):
        load_model(golden_ckpts[1], "cpu", precision="tf32")


def test_layout_is_set_after_padding(golden_ckpts, monkeypatch):
    """CUDA's reflection pad returns NCHW whatever its input's layout (the CPU's keeps it): the network must
    still get channels-last for a size that needs padding."""
    import dimatting.inference
    from dimatting.models.dim import reflect_pad_to_multiple

    monkeypatch.setattr(dimatting.inference, "reflect_pad_to_multiple",
                        lambda x: reflect_pad_to_multiple(x).contiguous())  # as on CUDA
    matter = load_model(golden_ckpts[1], "cpu", conv_backend="onednn")
    assert matter.channels_last
    seen = []
    hook = matter.model.backbone.encoder.layer1[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    matter.predict_raw(np.zeros((50, 70, 3), np.uint8), np.full((50, 70), 128, np.uint8), tiled=False)
    hook.remove()
    assert seen[-1].shape[-2:] == (64, 96) and seen[-1].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not nnpack.available(), reason="this PyTorch/CPU has no NNPACK")
@pytest.mark.parametrize("name", ["crop157x211", pytest.param("gt05", marks=pytest.mark.slow)])
def test_nnpack_alphas_close_to_golden(golden_dir, golden_ckpts, name):
    """NNPACK's Winograd/FFT rounding (~1e-5 per layer) flips a few more max-pool windows than oneDNN's: the
    final alphas equal the golden PNG on >= 99% of pixels, and differ by far less than 1/255 on average over
    the unknown region (measured on GT05: 2.2e-4)."""
    matter = load_model(golden_ckpts[3], "cpu", conv_backend="nnpack")
    assert matter.conv_backend == "nnpack" and not matter.channels_last
    assert sum(isinstance(m, nnpack.NnpackConv2d) for m in matter.model.modules()) == 23  # 13 + 4 3x3, 6 5x5
    image, trimap = golden_inputs(golden_dir, name)
    png = alpha_to_uint8(matter.predict(image, trimap)).astype(np.int16)
    golden_png = read_gray(golden_dir / "outputs" / f"{name}_stage3.png").astype(np.int16)
    diff = np.abs(png - golden_png)
    assert (diff == 0).mean() >= 0.99 and diff[trimap == 128].mean() / 255 <= 1e-3


def test_conv_backend_choice(golden_ckpts, monkeypatch):
    """auto: NNPACK for fp32 on AVX2 CPUs, oneDNN with AVX-512, with an explicit layout, or for bf16; an explicit
    nnpack that cannot run is an error naming the option."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(nnpack, "available", lambda: True)
    for capability, expected in (("AVX2", "nnpack"), ("AVX512", "onednn"), ("DEFAULT", "nnpack")):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert nnpack.choose("auto", cpu, "fp32", layout_requested=False) == expected
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert nnpack.choose("auto", cpu, "fp32", layout_requested=True) == "onednn"
    assert nnpack.choose("auto", cpu, "bf16", layout_requested=False) == "onednn"
    assert nnpack.choose("auto", torch.device("cuda"), "fp32", layout_requested=False) == "onednn"
    assert nnpack.choose("onednn", cpu, "fp32", layout_requested=False) == "onednn"
    with pytest.raises(InputError, match="--conv-backend nnpack: NNPACK runs fp32"):
        nnpack.choose("nnpack", cpu, "bf16", layout_requested=False)
    with pytest.raises(InputError, match="--conv-backend fast: unknown"):
        nnpack.choose("fast", cpu, "fp32", layout_requested=False)
    monkeypatch.setattr(nnpack, "available", lambda: False)
    assert nnpack.choose("auto", cpu, "fp32", layout_requested=False) == "onednn"
    with pytest.raises(InputError, match="has no NNPACK"):
        nnpack.choose("nnpack", cpu, "fp32", layout_requested=False)


def test_only_images_predicted_whole_are_staged_in_pinned_memory(golden_ckpts, monkeypatch):
    """A tiled image is uploaded tile by tile: page-locking all of it (1 GiB at 16384²) would serve nothing."""
    import dimatting.inference

    matter = load_model(golden_ckpts[1], "cpu", tile_threshold=64 * 64)
    matter.device = torch.device("cuda")  # the policy alone: no GPU needed (nor for these stand-in copies)
    monkeypatch.setattr(dimatting.inference, "pinned", lambda array: torch.from_numpy(array.copy()))
    for width, staged in ((64, True), (65, False)):
        pair = matter.prepare(np.zeros((64, width, 3), np.uint8), np.full((64, width), 128, np.uint8))
        assert (pair.staged is not None) == staged


def test_auto_tile_threshold_fixed_on_cpu_by_free_memory_on_cuda(golden_ckpts, monkeypatch):
    matter = load_model(golden_ckpts[1], "cpu")
    assert matter.tile_threshold == "auto"
    assert not matter.uses_tiles(1024, 1024) and matter.uses_tiles(1024, 1025)
    matter.device = torch.device("cuda")  # the policy alone: no GPU needed
    memory = {"free": 80 * 2**30, "reserved": 0, "allocated": 0}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (memory["free"], 141 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: memory["reserved"])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: memory["allocated"])
    for precision, per_pixel in CUDA_BYTES_PER_PIXEL.items():
        matter.precision = precision
        side = math.isqrt(40 * 2**30 // per_pixel)  # the largest square that fits in half of 80 GiB
        assert not matter.uses_tiles(side, side) and matter.uses_tiles(side + 1, side + 1)
    memory["reserved"] = 30 * 2**30  # PyTorch's cache holds 30 GiB, 10 of them in use: 100 GiB available
    memory["allocated"] = 10 * 2**30
    side = math.isqrt(50 * 2**30 // CUDA_BYTES_PER_PIXEL["bf16"])
    assert not matter.uses_tiles(side, side) and matter.uses_tiles(side + 1, side + 1)
    memory.update(free=2**29, reserved=0, allocated=0)  # a small or busy GPU: never above the CPU's threshold
    assert not matter.uses_tiles(1024, 1024) and matter.uses_tiles(1024, 1025)
    with pytest.raises(InputError, match="--tile-threshold -1: give a pixel count >= 0 or auto"):
        load_model(golden_ckpts[1], "cpu", tile_threshold=-1)


@pytest.mark.parametrize(("length", "tile", "overlap"), [(100, 768, 128), (1024, 768, 128), (4096, 768, 128),
                                                         (1000, 256, 64), (257, 128, 32)])
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and min(starts[-1] + tile, length) == length
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))
    assert all(b > a for a, b in itertools.pairwise(starts))


def test_tile_blending_is_a_partition_of_unity():
    height, width = 300, 410
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    field = np.sin(yy / 37) * np.cos(xx / 23)
    windows = []

    def run(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:  # each tile returns its part of a field
        y0, x0 = int(image[0, 0, 0]), int(image[0, 0, 1])
        windows.append((y0, x0))
        return field[y0 : y0 + trimap.shape[0], x0 : x0 + trimap.shape[1]]

    coords = np.stack([yy, xx, yy], axis=2).astype(np.int64)
    trimap = np.full((height, width), 128, np.uint8)
    blended = predict_tiled(run, coords, trimap, tile=128, overlap=32)
    np.testing.assert_allclose(blended, field, atol=1e-6)
    assert len(windows) == len(tile_windows(height, width, 128, 32))


def test_tiles_without_unknown_pixels_are_skipped():
    trimap = np.zeros((500, 500), np.uint8)
    trimap[:, 250:] = 255
    trimap[10:20, 10:20] = 128
    calls = []

    def run(image: np.ndarray, tri: np.ndarray) -> np.ndarray:
        calls.append(tri.shape)
        return np.full(tri.shape, 0.5, np.float32)

    out = predict_tiled(run, np.zeros((500, 500, 3), np.uint8), trimap, tile=192, overlap=64)
    assert len(calls) == 1
    assert out[15, 15] == pytest.approx(0.5)
    assert (out[:, 300:] == 1).all() and (out[400:, :200] == 0).all()


def test_tiled_model_prediction_on_small_tiles(golden_dir, golden_ckpts):
    matter = load_model(golden_ckpts[1], "cpu", tile_size=96, tile_overlap=32, tile_threshold=96 * 96)
    image, trimap = golden_inputs(golden_dir, "crop157x211")
    assert matter.uses_tiles(*trimap.shape)
    tiled = matter.predict(image, trimap)
    whole = matter.predict(image, trimap, tiled=False)
    assert np.isfinite(tiled).all() and (tiled[trimap == 255] == 1).all() and (tiled[trimap == 0] == 0).all()
    assert not np.array_equal(tiled, whole)  # really tiled
    big = load_model(golden_ckpts[1], "cpu", tile_size=256, tile_overlap=32, tile_threshold=1)
    np.testing.assert_array_equal(big.predict(image, trimap), whole)  # one tile = the whole-image path
    with pytest.raises(InputError, match="multiple of 32"):
        Matter(build_dim(with_refiner=False), torch.device("cpu"), tile_size=100)


@pytest.mark.slow
def test_tiled_vs_whole_on_1024_gt05(golden_dir, golden_ckpts):
    """The reported number: tiled (768 tiles, >=128 overlap) vs whole on GT05 upscaled to 1024x1024, stage 1."""
    image, trimap = golden_inputs(golden_dir, "gt05")
    image = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    trimap = cv2.resize(trimap, (1024, 1024), interpolation=cv2.INTER_NEAREST)
    matter = load_model(golden_ckpts[1], "cpu")
    assert not matter.uses_tiles(1024, 1024) and matter.count_tiles(1024, 1024) == 4
    whole = matter.predict(image, trimap, tiled=False)
    tiled = matter.predict(image, trimap, tiled=True)
    unknown = trimap == 128
    mean_diff = float(np.abs(tiled - whole)[unknown].mean())
    sad_diff = abs(float(tiled.sum() - whole.sum())) / 1000
    print(f"tiled vs whole 1024x1024 stage 1: mean |dalpha| unknown {mean_diff:.5f} ({mean_diff * 255:.2f}/255), "
          f"SAD difference {sad_diff:.4f}")
    assert mean_diff <= 1 / 255


def test_trimap_from_mask():
    mask = np.zeros((120, 160), np.uint8)
    cv2.circle(mask, (80, 60), 40, 255, -1)
    trimap = trimap_from_mask(mask, band=5)
    assert set(np.unique(trimap)) == {0, 128, 255}
    assert trimap[60, 80] == 255 and trimap[0, 0] == 0
    assert trimap[60, 80 + 40] == 128  # the edge is unknown
    assert trimap[60, 80 + 47] == 0 and trimap[60, 80 + 34] == 255  # band of 5 px each side
    with pytest.raises(InputError, match="all background"):
        trimap_from_mask(np.zeros((10, 10), np.uint8))


def test_onnx_export_and_onnxruntime_prediction(golden_dir, golden_ckpts, tmp_path, capsys):
    """`dim export-onnx` then predict with onnxruntime: same pipeline, golden tolerance on the unknown region."""
    from dimatting.cli import main

    onnx_path = tmp_path / "stage3.onnx"
    logger = logging.getLogger("dimatting")
    saved = logger.handlers[:], logger.level
    try:
        assert main(["export-onnx", "--checkpoint", str(golden_ckpts[3]), "-o", str(onnx_path)]) == 0
    finally:  # cli.main points the logger at this test's captured stderr
        logger.handlers[:], logger.level = saved
    matter = load_model(onnx_path, device="cpu")
    assert matter.refines
    image, trimap = golden_inputs(golden_dir, "crop157x211")
    raw = matter.predict_raw(image, trimap)
    golden = np.load(golden_dir / "outputs" / "crop157x211_stage3.npy")
    assert_close_to_golden(raw[trimap == 128], golden[trimap == 128])
    alpha = matter.predict(image, trimap)
    assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 1).all()
    with pytest.raises(InputError, match=r"stage3\.onnx: ONNX models run in fp32 on the CPU"):
        load_model(onnx_path, device="cpu", precision="bf16")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"bad\.onnx: onnxruntime cannot load it"):
        load_model(tmp_path / "bad.onnx", device="cpu")


def test_top_level_load_model_is_the_inference_one(golden_dir, golden_ckpts):
    import dimatting

    matter = dimatting.load_model(golden_ckpts[1], device="cpu")
    assert isinstance(matter, Matter) and not matter.refines
    image, trimap = golden_inputs(golden_dir, "crop157x211")
    expected = load_model(golden_ckpts[1], "cpu").predict(image, trimap)
    np.testing.assert_array_equal(matter.predict(image, trimap), expected)
