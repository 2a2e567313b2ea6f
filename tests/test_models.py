"""Model structure and golden parity with mmagic's DIM (forward, refiner, test-time padding, losses)."""

from __future__ import annotations

import hashlib
import json
import re

import cv2
import numpy as np
import pytest
import torch

from dimatting.losses import CharbonnierCompLoss, CharbonnierLoss, mask_reduce
from dimatting.models import DIM, MattorPreprocessor, build_dim, postprocess_alpha
from dimatting.models.dim import reflect_pad_to_multiple
from tests.golden_weights import golden_model, golden_state_dict

STAGE1_SHA = "d02c13f66067b717fd69af01d2bd3fcc2292723f08414ca1fb9494a28e729faf"
STAGE3_SHA = "f7cdb64fa49a2f6be61b261d337d24e27c4a026e56fc1c3de8afe8f26c51922c"


def golden_key_table(golden_dir):
    """(key, shape, stage) rows of the state-dict table in the golden README."""
    rows = re.findall(
        r"^\| (\d+) \| (\S+) \| \(([\d, ]+)\) \| (both|3 only) \|$", (golden_dir / "README.md").read_text(), re.M
    )
    return [(key, tuple(int(s) for s in shape.split(",") if s.strip()), stage) for _, key, shape, stage in rows]


def read_inputs(golden_dir, name):
    merged = cv2.imread(str(golden_dir / "inputs" / f"{name}_merged.png"), cv2.IMREAD_COLOR)
    trimap = cv2.imread(str(golden_dir / "inputs" / f"{name}_trimap.png"), cv2.IMREAD_GRAYSCALE)
    return merged, trimap


def network_input(model: DIM, merged_bgr: np.ndarray, trimap: np.ndarray) -> torch.Tensor:
    image = torch.from_numpy(merged_bgr).permute(2, 0, 1)[None]
    tri = torch.from_numpy(trimap)[None, None]
    return model.data_preprocessor(image, tri, bgr=True)


@pytest.mark.parametrize("stage", [1, 3])
def test_state_dict_keys_and_shapes_match_mmagic(golden_dir, stage):
    table = [(k, s) for k, s, st in golden_key_table(golden_dir) if stage == 3 or st == "both"]
    assert len(table) == (42 if stage == 1 else 50)
    model = build_dim(with_refiner=stage == 3)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == table
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == (26_200_001 if stage == 1 else 26_276_802)


@pytest.mark.parametrize(("stage", "sha"), [(1, STAGE1_SHA), (3, STAGE3_SHA)])
def test_golden_weights_are_the_documented_ones(golden_dir, stage, sha):
    model = build_dim(with_refiner=stage == 3)
    tensors = golden_state_dict(golden_dir, model)
    digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in tensors.values())).hexdigest()
    assert digest == sha


@torch.backends.mkldnn.flags(enabled=False)
def test_forward_matches_golden_on_crop(golden_dir):
    """157x211 crop (padded to 160x224), with oneDNN off: its kernels differ between AVX2 and AVX-512 CPUs and
    flip near-tied max-pool windows (1% of this crop on an AVX2 EPYC), while PyTorch's own convolution gives the
    golden README's "MKLDNN off" figures on both (max 4.2e-6). Other hosts round differently (a 16-core Intel
    host with torch 2.11: 2.4e-6; an AVX2 EPYC: 2.4e-5 on a logit of 6.7; a 2-core AVX-512 Xeon with torch 2.13:
    2.4e-5 on a logit of 0.6, median 2.4e-6), so raw logits (up to +-10) within 5e-5 plus 5e-6 relative, and
    sigmoid outputs within 1.5e-5 (the sigmoid's slope is at most 1/4); a wrong layer or weight is off by 1e-3 or
    more."""
    torch.set_num_threads(2)
    merged, trimap = read_inputs(golden_dir, "crop157x211")
    out = golden_dir / "outputs"
    model = golden_model(golden_dir, stage=3)
    x = reflect_pad_to_multiple(network_input(model, merged, trimap))
    assert x.shape[-2:] == (160, 224)
    with torch.inference_mode():
        raw_alpha = model.backbone(x)
        pred_alpha, pred_refine = model(x)
    raw_refine = torch.logit(pred_refine.double()) - raw_alpha.double()
    h, w = trimap.shape
    np.testing.assert_allclose(
        raw_alpha[0, 0, :h, :w].numpy(), np.load(out / "crop157x211_stage1.raw_alpha.npy"), atol=5e-5, rtol=5e-6
    )
    np.testing.assert_allclose(pred_alpha[0, 0, :h, :w].numpy(), np.load(out / "crop157x211_stage1.npy"), atol=1.5e-5)
    np.testing.assert_allclose(pred_refine[0, 0, :h, :w].numpy(), np.load(out / "crop157x211_stage3.npy"), atol=1.5e-5)
    ref_raw_refine = np.load(out / "crop157x211_stage3.raw_refine.npy")
    sat = (pred_refine[0, 0, :h, :w] > 1e-4) & (pred_refine[0, 0, :h, :w] < 1 - 1e-4)
    np.testing.assert_allclose(raw_refine[0, 0, :h, :w][sat].numpy(), ref_raw_refine[sat.numpy()], atol=1e-3)


@pytest.mark.parametrize("name", ["crop157x211", "gt05"])
@pytest.mark.parametrize("stage", [1, 3])
def test_predict_path_matches_golden(golden_dir, name, stage):
    """Whole test-time path: pad, forward, crop, postprocess; tolerance for max-pool near-ties (golden README).
    The raw output is compared on every pixel with oneDNN off (CPU-independent arithmetic, see above); the uint8
    alpha of the default path, whose flips stay in known regions that the trimap overwrites."""
    merged, trimap = read_inputs(golden_dir, name)
    model = golden_model(golden_dir, stage)
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        pred = model.predict(network_input(model, merged, trimap))[0, 0]
    ref = np.load(golden_dir / "outputs" / f"{name}_stage{stage}.npy")
    diff = np.abs(pred.numpy() - ref)
    assert pred.shape == ref.shape
    assert np.median(diff) < 1e-6
    assert (diff <= 1e-5).mean() >= 0.95
    with torch.inference_mode():
        alpha_u8 = postprocess_alpha(model.predict(network_input(model, merged, trimap))[0, 0],
                                     torch.from_numpy(trimap)).numpy()
    ref_png = cv2.imread(str(golden_dir / "outputs" / f"{name}_stage{stage}.png"), cv2.IMREAD_GRAYSCALE)
    png_diff = np.abs(alpha_u8.astype(int) - ref_png.astype(int))
    assert np.median(png_diff) == 0
    assert (png_diff == 0).mean() >= 0.95


def test_losses_match_golden(golden_dir):
    spec = json.loads((golden_dir / "losses.json").read_text())
    d = golden_dir / "loss_inputs"
    read = lambda n, f=cv2.IMREAD_COLOR: cv2.imread(str(d / f"{n}.png"), f)  # noqa: E731
    model = golden_model(golden_dir, stage=3)
    model.train_backbone = model.train_refiner = True
    model.loss_alpha = CharbonnierLoss(0.5)
    model.loss_comp = CharbonnierCompLoss(0.5)
    model.loss_refine = CharbonnierLoss(1.0)
    trimap = read("trimap", cv2.IMREAD_GRAYSCALE)
    x = network_input(model, read("merged"), trimap)
    to = lambda a: MattorPreprocessor.gt_to_rgb01(torch.from_numpy(a).permute(2, 0, 1)[None])  # noqa: E731
    alpha = torch.from_numpy(read("alpha", cv2.IMREAD_GRAYSCALE))[None, None] / 255.0
    with torch.no_grad():
        losses = model.compute_losses(x, alpha, to(read("fg")), to(read("bg")), to(read("merged")))
    assert int((x[:, 3] == 128 / 255).sum()) == spec["stage3"]["n_unknown"]
    for key, value in spec["stage3"]["losses"].items():
        assert losses[key].item() == pytest.approx(value, rel=2e-5)
    model.train_refiner = False
    with torch.no_grad():
        stage1 = model.compute_losses(x, alpha, to(read("fg")), to(read("bg")), to(read("merged")))
    assert set(stage1) == {"loss_alpha", "loss_comp"}


def test_mask_reduce_is_batch_pixel_mean_and_zero_without_unknown():
    loss = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 5.0]]]])
    weight = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]]])
    assert mask_reduce(loss, weight).item() == pytest.approx((1 + 3 + 5) / 3)
    assert mask_reduce(loss, weight, sample_wise=True).item() == pytest.approx((1 / 1 + 8 / 2) / 2)
    assert mask_reduce(loss, torch.zeros_like(weight)).item() == 0.0
    comp = CharbonnierCompLoss()(
        torch.zeros(1, 1, 1, 2),
        torch.ones(1, 3, 1, 2),
        torch.zeros(1, 3, 1, 2),
        torch.ones(1, 3, 1, 2),
        torch.tensor([[[[1.0, 0.0]]]]),
    )
    assert comp.item() == pytest.approx(1.0)  # 3 channels of error 1 over 3 masked elements


def test_stage2_freezes_backbone_and_train_keeps_it_in_eval():
    model = build_dim(with_refiner=True)
    stage2 = DIM(
        backbone=model.backbone,
        refiner=model.refiner,
        train_cfg={"train_backbone": False, "train_refiner": True},
        test_cfg={"refine": True},
        loss_refine=CharbonnierLoss(),
    )
    assert all(not p.requires_grad for p in stage2.backbone.parameters())
    assert all(p.requires_grad for p in stage2.refiner.parameters())
    assert stage2.train() is stage2
    assert not stage2.backbone.training and stage2.refiner.training
    x = torch.zeros(1, 4, 32, 32)
    x[:, 3] = 128 / 255
    losses = stage2.compute_losses(
        x, torch.rand(1, 1, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    )
    assert set(losses) == {"loss_refine"}
    losses["loss_refine"].backward()
    assert stage2.refiner.refine_pred.weight.grad is not None


def test_postprocess_rounds_half_to_even_and_masks():
    pred = torch.tensor([[0.5 / 255, 1.5 / 255, 2.5 / 255, 1.7, -1.0, 0.3]])
    trimap = torch.tensor([[128, 128, 128, 128, 128, 0]], dtype=torch.uint8)
    assert postprocess_alpha(pred, trimap).tolist() == [[0, 2, 2, 255, 0, 0]]


def test_reflect_pad_handles_sides_shorter_than_the_pad():
    x = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 1, 5, 10)
    padded = reflect_pad_to_multiple(x)
    assert padded.shape[-2:] == (32, 32)
    assert torch.equal(padded[..., :5, :10], x)
    big = torch.rand(1, 4, 40, 70)
    assert torch.equal(reflect_pad_to_multiple(big), torch.nn.functional.pad(big, (0, 26, 0, 24), mode="reflect"))
