"""Pipeline transforms: reference semantics, the exact RNG draw order, and packed-sample layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dimatting.data import collate
from dimatting.data.transforms import (
    CropAroundUnknown,
    Flip,
    GenerateTrimap,
    LoadImageFromFile,
    MergeFgAndBg,
    PackInputs,
    RescaleToZeroOne,
    Resize,
    image_to_tensor,
    nth_true,
)
from dimatting.errors import ConfigError, DataError
from tests.pipelines import stage1_train_pipeline


def run(pipeline: list, results: dict, rng: np.random.RandomState) -> dict:
    for transform in pipeline:
        results = transform(results, rng)
    return results


def literal_train(alpha, fg, bg, merged, rng):
    """Independent re-implementation of the reference's stage-1 augmentation, written from facts §4.3-4.7.

    Draws: randint(3) crop size, randint(count) centre (skipped when count == 1: such a draw consumes
    nothing in numpy), random() flip, randint(29) erosion, randint(29) dilation.
    """
    images = {"alpha": alpha[:, :, 0], "fg": fg, "bg": bg, "merged": merged}
    size = [320, 480, 640][rng.randint(3)]
    h, w = alpha.shape[:2]
    ratio = max(size / h, size / w)
    if ratio > 1:
        h, w = max(int(h * ratio), size), max(int(w * ratio), size)
        images = {k: cv2.resize(v, (w, h), interpolation=cv2.INTER_LINEAR) for k, v in images.items()}
    unknown = (images["alpha"] > 0) & (images["alpha"] < 255)
    band = np.zeros_like(unknown)
    band[size // 2 : h - size // 2, size // 2 : w - size // 2] = True
    candidates = np.argwhere(unknown & band)
    if len(candidates) == 0:
        candidates = np.argwhere(unknown)
    if len(candidates) == 0:
        candidates = np.array([[size // 2, size // 2]])
    cy, cx = candidates[rng.randint(len(candidates))] if len(candidates) > 1 else candidates[0]
    top = min(max(cy - size // 2, 0), h - size)
    left = min(max(cx - size // 2, 0), w - size)
    images = {k: v[top : top + size, left : left + size] for k, v in images.items()}
    if rng.random_sample() < 0.5:
        images = {k: v[:, ::-1] for k, v in images.items()}
    images = {k: cv2.resize(np.ascontiguousarray(v), (320, 320)) for k, v in images.items()}
    k_erode, k_dilate = rng.randint(29) + 1, rng.randint(29) + 1
    a = images["alpha"]
    eroded = cv2.erode(a, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k_erode, k_erode)))
    dilated = cv2.dilate(a, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k_dilate, k_dilate)))
    trimap = np.where(dilated == 0, 0, np.where(eroded == 255, 255, 128)).astype(np.uint8)
    return images, trimap


def chw(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy().squeeze(-1) if t.shape[0] == 1 else t.permute(1, 2, 0).numpy()


def test_single_value_draws_consume_no_state():
    """Facts §9.26: the pipeline relies on numpy's legacy randint(1)/randint(1, 2) not drawing."""
    a, b = np.random.RandomState(7), np.random.RandomState(7)
    assert b.randint(1) == 0 and b.randint(1, 2) == 1
    assert a.random_sample() == b.random_sample()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 5, 8, 13, 21])
def test_train_pipeline_matches_literal_draw_order(data_dir: Path, seed: int):
    root = data_dir / "comp1k_mini"
    results = {k + "_path": str(root / k / "GT05.jpg") for k in ("alpha", "fg", "merged")}
    results["bg_path"] = str(root / "bg" / "GT26r.jpg")
    rng = np.random.RandomState(seed)
    packed = run(stage1_train_pipeline(), dict(results), rng)

    alpha = cv2.imread(results["alpha_path"], cv2.IMREAD_GRAYSCALE)[:, :, None]
    fg, bg, merged = (cv2.imread(results[f"{k}_path"]) for k in ("fg", "bg", "merged"))
    expected_rng = np.random.RandomState(seed)
    images, trimap = literal_train(alpha, fg, bg, merged, expected_rng)

    samples = packed["data_samples"]
    assert np.array_equal(chw(samples["gt_alpha"]), images["alpha"])
    assert np.array_equal(chw(samples["gt_fg"]), images["fg"])
    assert np.array_equal(chw(samples["gt_bg"]), images["bg"])
    assert np.array_equal(chw(samples["gt_merged"]), images["merged"])
    assert np.array_equal(chw(packed["inputs"]), images["merged"])
    assert np.array_equal(chw(samples["trimap"]), trimap)
    state, expected_state = rng.get_state(), expected_rng.get_state()
    assert np.array_equal(state[1], expected_state[1]) and state[2] == expected_state[2]


def _crop_case(alpha2d: np.ndarray, seed: int):
    alpha = alpha2d[:, :, None]
    results = {"alpha": alpha.copy(), "fg": np.repeat(alpha, 3, axis=2)}
    rng = np.random.RandomState(seed)
    out = CropAroundUnknown(keys=["alpha", "fg"], crop_sizes=[4, 6])(results, rng)
    return out, rng


def test_crop_single_candidate_and_no_unknown_draw_only_the_size():
    alpha = np.zeros((12, 12), np.uint8)
    alpha[5, 7] = 100  # exactly one unknown pixel, inside the valid band
    out, rng = _crop_case(alpha, 3)
    expected = np.random.RandomState(3)
    size = [4, 6][expected.randint(2)]
    assert out["crop_bbox"] == (7 - size // 2, 5 - size // 2, 7 - size // 2 + size, 5 - size // 2 + size)
    assert rng.random_sample() == expected.random_sample()

    out, rng = _crop_case(np.zeros((12, 12), np.uint8), 4)  # no unknown pixel: fixed centre
    expected = np.random.RandomState(4)
    size = [4, 6][expected.randint(2)]
    assert out["crop_bbox"] == (0, 0, size, size)
    assert rng.random_sample() == expected.random_sample()


def test_crop_upscales_small_images_with_int_sizes():
    alpha = np.full((50, 70, 1), 128, np.uint8)
    results = {"alpha": alpha, "merged": np.zeros((50, 70, 3), np.uint8)}
    out = CropAroundUnknown(keys=["alpha", "merged"], crop_sizes=[64])(results, np.random.RandomState(0))
    assert out["alpha"].shape == (64, 64, 1) and out["merged"].shape == (64, 64, 3)
    # 50x70 -> ratio 1.28 -> 64 x int(89.6) = 89 before the crop
    assert out["crop_bbox"][2] <= 89


@settings(max_examples=40, deadline=None)
@given(
    alpha=arrays(
        np.uint8, st.tuples(st.integers(24, 48), st.integers(24, 48)), elements=st.sampled_from([0, 255, 7, 128])
    ),
    sizes=st.lists(st.integers(8, 24), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_crop_contains_unknown_pixels(alpha, sizes, seed):
    results = {"alpha": alpha[:, :, None].copy(), "merged": np.repeat(alpha[:, :, None], 3, axis=2)}
    out = CropAroundUnknown(keys=["alpha", "merged"], crop_sizes=sizes)(results, np.random.RandomState(seed))
    crop = out["alpha"]
    assert crop.shape[:2] in {(s, s) for s in sizes} and crop.shape[2] == 1
    assert np.array_equal(out["merged"][:, :, 0], crop[:, :, 0])
    left, top, right, bottom = out["crop_bbox"]
    assert np.array_equal(crop[:, :, 0], alpha[top:bottom, left:right])
    has_unknown = ((alpha > 0) & (alpha < 255)).any()
    assert ((crop > 0) & (crop < 255)).any() == has_unknown


@settings(max_examples=40, deadline=None)
@given(
    alpha=arrays(np.uint8, st.tuples(st.integers(8, 40), st.integers(8, 40))),
    seed=st.integers(0, 2**32 - 1),
)
def test_generated_trimap_levels_and_consistency(alpha, seed):
    out = GenerateTrimap(kernel_size=(1, 30))({"alpha": alpha[:, :, None]}, np.random.RandomState(seed))
    trimap = out["trimap"]
    assert trimap.shape == (*alpha.shape, 1) and trimap.dtype == np.uint8
    assert set(np.unique(trimap)) <= {0, 128, 255}
    assert (alpha[trimap[:, :, 0] == 255] == 255).all()
    assert (alpha[trimap[:, :, 0] == 0] == 0).all()


def test_generate_trimap_non_random_uses_given_kernels():
    alpha = np.zeros((40, 40, 1), np.uint8)
    alpha[10:30, 10:30] = 255
    rng = np.random.RandomState(0)
    before = rng.get_state()[1].copy()
    out = GenerateTrimap(kernel_size=(5, 9), iterations=(1, 1), random=False)({"alpha": alpha}, rng)
    assert np.array_equal(rng.get_state()[1], before)
    t = out["trimap"][:, :, 0]
    assert t[20, 20] == 255 and t[0, 0] == 0 and t[10, 10] == 128 and t[12, 12] == 255 and t[7, 20] == 128


@settings(max_examples=30, deadline=None)
@given(data=st.data(), h=st.integers(1, 20), w=st.integers(1, 20))
def test_merge_fg_and_bg_formula(data, h, w):
    fg, bg = (data.draw(arrays(np.uint8, (h, w, 3))) for _ in range(2))
    alpha = data.draw(arrays(np.uint8, (h, w, 1)))
    out = MergeFgAndBg()({"fg": fg, "bg": bg, "alpha": alpha})
    a = alpha.astype(np.float64) / 255
    assert out["merged"].dtype == np.float32 and out["merged"].shape == (h, w, 3)
    assert np.allclose(out["merged"], fg * a + bg * (1 - a), atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(
    image=arrays(np.uint8, st.tuples(st.integers(2, 30), st.integers(2, 30), st.sampled_from([1, 3]))),
    seed=st.integers(0, 2**32 - 1),
)
def test_flip_and_resize_shapes(image, seed):
    rng = np.random.RandomState(seed)
    out = Flip(keys=["a"])({"a": image.copy()}, rng)
    flipped = out["flip_infos"][0]["flip"]
    assert np.array_equal(out["a"], image[:, ::-1] if flipped else image)
    out = Resize(keys=["a"], scale=(16, 12))(out, rng)
    assert out["a"].shape == (12, 16, image.shape[2]) and out["a_shape"] == out["a"].shape


def test_resize_keep_ratio_like_mmcv():
    image = np.zeros((100, 50, 3), np.uint8)
    out = Resize(keys=["img"], scale=(64, 32), keep_ratio=True)({"img": image})
    assert out["img"].shape == (64, 32, 3) and out["scale_factor"] == pytest.approx(0.64)
    out = Resize(keys=["img"], scale=1.5, keep_ratio=True)({"img": image})
    assert out["img"].shape == (150, 75, 3)
    out = Resize(keys=["img"], scale=(40, -1), keep_ratio=True)({"img": image})  # short edge to 40
    assert out["img"].shape == (80, 40, 3)
    out = Resize(keys=["img"], size_factor=32, max_size=64)({"img": image})
    assert out["img"].shape == (64, 32, 3)
    with pytest.raises(ConfigError):
        Resize(keys=["img"], scale=0.5)


def test_rescale_to_zero_one():
    out = RescaleToZeroOne(keys=["a", "b"])({"a": np.array([[0, 255]], np.uint8), "b": [np.full((2, 2), 51, np.uint8)]})
    assert out["a"].dtype == np.float32 and out["a"].tolist() == [[0.0, 1.0]]
    assert np.allclose(out["b"][0], 0.2)


def test_load_image_from_file_like_mmcv(tmp_path: Path):
    colour = np.random.RandomState(0).randint(0, 256, (9, 11, 3)).astype(np.uint8)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), colour)
    out = LoadImageFromFile("img")({"img_path": str(path)})
    assert np.array_equal(out["img"], colour) and out["ori_img_shape"] == (9, 11, 3)
    assert out["img_channel_order"] == "bgr" and out["img_color_type"] == "color"
    out = LoadImageFromFile("alpha", color_type="grayscale", save_original_img=True)({"alpha_path": path})
    gray = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert out["alpha"].shape == (9, 11, 1) and np.array_equal(out["alpha"][:, :, 0], gray)
    assert out["ori_alpha"] is not out["alpha"] and np.array_equal(out["ori_alpha"], out["alpha"])
    out = LoadImageFromFile("img", channel_order="rgb", to_float32=True)({"img_path": str(path)})
    assert out["img"].dtype == np.float32 and np.array_equal(out["img"], colour[:, :, ::-1])


def test_load_image_errors_name_the_file(tmp_path: Path):
    with pytest.raises(DataError, match=r"nothere\.png"):
        LoadImageFromFile("img")({"img_path": str(tmp_path / "nothere.png")})
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.png"):
        LoadImageFromFile("img")({"img_path": str(bad)})
    with pytest.raises(ConfigError):
        LoadImageFromFile("img", imdecode_backend="pillow")


def test_pack_inputs_layout():
    results = {
        "merged": np.zeros((4, 5, 3), np.uint8),
        "alpha": np.ones((4, 5, 1), np.uint8),
        "trimap": np.full((4, 5), 128, np.uint8),
        "merged_path": "m.png",
        "alpha_path": "a.png",
        "ori_merged_shape": (4, 5, 3),
        "sample_idx": 3,
        "crop_bbox": (0, 0, 5, 4),
        "extra": np.zeros((4, 5, 2), np.float32),
    }
    packed = PackInputs()(dict(results))
    assert packed["inputs"].shape == (3, 4, 5) and packed["inputs"].dtype == torch.uint8
    samples = packed["data_samples"]
    assert set(samples) == {"gt_merged", "gt_alpha", "trimap", "metainfo"}
    assert samples["trimap"].shape == (1, 4, 5)
    assert samples["metainfo"] == {"merged_path": "m.png", "ori_merged_shape": (4, 5, 3), "sample_idx": 3}
    packed = PackInputs(keys=["merged", "alpha"], meta_keys=["crop_bbox"], data_keys="extra")(dict(results))
    assert set(packed["inputs"]) == {"merged", "alpha"}
    assert packed["data_samples"]["extra"].shape == (2, 4, 5)
    assert packed["data_samples"]["metainfo"]["crop_bbox"] == (0, 0, 5, 4)


def test_collate_stacks_and_lists_metainfo():
    pack = PackInputs()
    samples = [
        pack({"merged": np.full((4, 4, 3), i, np.uint8), "alpha": np.zeros((4, 4, 1), np.uint8), "sample_idx": i})
        for i in range(3)
    ]
    batch = collate(samples)
    assert batch["inputs"].shape == (3, 3, 4, 4) and batch["inputs"][2].max() == 2
    assert batch["data_samples"]["gt_alpha"].shape == (3, 1, 4, 4)
    assert batch["data_samples"]["metainfo"] == [{"sample_idx": i} for i in range(3)]
    other = pack({"merged": np.zeros((5, 4, 3), np.uint8), "alpha": np.zeros((5, 4, 1), np.uint8)})
    with pytest.raises(ConfigError, match="batch_size=1"):
        collate([samples[0], other])


# The fast paths against the transforms' logic written plainly: full-size masks, np.nonzero, numpy copies.


def plain_resize(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    out = cv2.resize(image, size_wh, interpolation=cv2.INTER_LINEAR)
    return out[:, :, None] if image.ndim == 3 and out.ndim == 2 else out


def plain_crop(results: dict, sizes: list, rng: np.random.RandomState, source: str = "alpha") -> tuple[dict, tuple]:
    """CropAroundUnknown the straightforward way: whole-image unknown and valid masks, then np.nonzero."""
    h, w = results["alpha"].shape[:2]
    crop_h, crop_w = sizes[rng.randint(len(sizes))]
    ratio = max(crop_h / h, crop_w / w)
    if ratio > 1:
        h, w = max(int(h * ratio), crop_h), max(int(w * ratio), crop_w)
        results = {k: plain_resize(v, (w, h)) for k, v in results.items()}
    src = results[source]
    unknown = ((src > 0) & (src < 255) if source == "alpha" else src == 128).reshape(h, w)
    half_h, half_w = crop_h // 2, crop_w // 2
    valid = np.zeros_like(unknown)
    valid[half_h : h - half_h, half_w : w - half_w] = True
    inside = unknown & valid
    if inside.any():
        rows, cols = np.nonzero(inside)
    elif unknown.any():
        rows, cols = np.nonzero(unknown)
    else:
        rows, cols = np.array([half_h]), np.array([half_w])
    pick = rng.randint(len(rows))
    top = int(np.clip(rows[pick] - half_h, 0, h - crop_h))
    left = int(np.clip(cols[pick] - half_w, 0, w - crop_w))
    crops = {k: v[top : top + crop_h, left : left + crop_w] for k, v in results.items()}
    return crops, (left, top, left + crop_w, top + crop_h)


def random_alpha(gen: np.random.RandomState) -> np.ndarray:
    """An HxWx1 (or HxW) alpha of a random kind: noise, all 0, all 255, a soft blob, or unknown only at the border."""
    h, w = gen.randint(1, 90, size=2)
    kind = gen.randint(5)
    if kind == 0:
        alpha = gen.choice([0, 255, gen.randint(1, 255)], size=(h, w), p=gen.dirichlet([1, 1, 1]))
    elif kind in (1, 2):
        alpha = np.full((h, w), 255 * (kind - 1))
    elif kind == 3:
        yy, xx = np.mgrid[:h, :w]
        radius = np.hypot((yy - gen.uniform(0, h)) / h, (xx - gen.uniform(0, w)) / w)
        alpha = np.clip((gen.uniform(0.2, 0.6) - radius) * gen.uniform(300, 3000), 0, 255)
    else:
        alpha = np.full((h, w), 255 * gen.randint(2))
        band = gen.randint(1, 4)
        edge = np.ones((h, w), bool)
        edge[band : h - band, band : w - band] = False
        alpha[edge & (gen.random_sample((h, w)) < 0.3)] = gen.randint(1, 255)
    alpha = alpha.astype(np.uint8)
    return alpha[:, :, None] if gen.randint(4) else alpha


def random_crop_sizes(gen: np.random.RandomState) -> list:
    """1-3 crop sizes, odd and even, square ints or (h, w) pairs, some larger than the image."""
    sizes = []
    for _ in range(gen.randint(1, 4)):
        sizes.append(int(gen.randint(1, 70)) if gen.randint(2) else (int(gen.randint(1, 70)), int(gen.randint(1, 70))))
    return sizes


def assert_same_rng(a: np.random.RandomState, b: np.random.RandomState) -> None:
    state_a, state_b = a.get_state(), b.get_state()
    assert np.array_equal(state_a[1], state_b[1]) and state_a[2:] == state_b[2:]


def assert_same_arrays(got: dict, expected: dict) -> None:
    assert got.keys() >= expected.keys()
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert np.array_equal(got[key], value), key


@pytest.mark.parametrize("case", range(400))
def test_crop_matches_plain_masks_and_nonzero(case: int):
    gen = np.random.RandomState(case)
    alpha = random_alpha(gen)
    sizes = random_crop_sizes(gen)
    merged = np.repeat(alpha.reshape(*alpha.shape[:2], 1), 3, axis=2) ^ np.uint8(gen.randint(256))
    seed = int(gen.randint(2**32))
    results = {"alpha": alpha, "merged": merged}
    rng, plain_rng = np.random.RandomState(seed), np.random.RandomState(seed)
    out = CropAroundUnknown(keys=["alpha", "merged"], crop_sizes=sizes)(dict(results), rng)
    expected, bbox = plain_crop(dict(results), [(s, s) if isinstance(s, int) else s for s in sizes], plain_rng)
    assert out["crop_bbox"] == bbox
    assert_same_arrays(out, expected)
    assert_same_rng(rng, plain_rng)


def test_nth_true_matches_flatnonzero():
    gen = np.random.RandomState(3)
    sizes = [(1, 1, 1), (3, 5, 0.5), (64, 64, 0.01), (64, 65, 0.99), (300, 517, 0.001), (300, 517, 0.3), (1, 9000, 0.5)]
    masks = [gen.random_sample((h, w)) < density for h, w, density in sizes]
    for first, last in ((0, 0), (-1, -1), (0, -1), (5000, 5000)):
        mask = np.zeros((100, 120), bool)
        mask.flat[first] = mask.flat[last] = True
        masks.append(mask)
    masks.append(np.ones((200, 201), bool))
    for mask in masks:
        indices = np.flatnonzero(mask)
        for n in {0, len(indices) - 1, *gen.randint(len(indices), size=20)}:
            assert nth_true(mask, n) == indices[n]


@pytest.mark.parametrize("case", range(60))
def test_crop_float_alpha_and_trimap_source_match_plain(case: int):
    gen = np.random.RandomState(1000 + case)
    alpha = random_alpha(gen).astype(np.float32)
    alpha[gen.random_sample(alpha.shape) < 0.05] = gen.choice([0.5, 254.5, 255.0])  # unknown only as floats
    trimap = np.where(alpha == 0, 0, np.where(alpha == 255, 255, 128)).astype(np.uint8)
    sizes = random_crop_sizes(gen)
    pairs = [(s, s) if isinstance(s, int) else s for s in sizes]
    seed = int(gen.randint(2**32))
    for source, keys in (("alpha", ["alpha"]), ("trimap", ["alpha", "trimap"])):
        results = {"alpha": alpha, "trimap": trimap} if source == "trimap" else {"alpha": alpha}
        rng, plain_rng = np.random.RandomState(seed), np.random.RandomState(seed)
        out = CropAroundUnknown(keys=keys, crop_sizes=sizes, unknown_source=source)(dict(results), rng)
        expected, bbox = plain_crop(dict(results), pairs, plain_rng, source)
        assert out["crop_bbox"] == bbox
        assert_same_arrays(out, expected)
        assert_same_rng(rng, plain_rng)


def test_crop_reads_a_read_only_memmap_without_writing(tmp_path: Path):
    gen = np.random.RandomState(5)
    alpha = np.zeros((200, 300, 1), np.uint8)
    alpha[40:160, 60:250] = 255
    alpha[35:45, 60:250] = gen.randint(1, 255, (10, 190, 1))
    path = tmp_path / "alpha.u8"
    alpha.tofile(path)
    mapped = np.memmap(path, np.uint8, mode="r", shape=alpha.shape)
    for seed in range(20):
        rng, plain_rng = np.random.RandomState(seed), np.random.RandomState(seed)
        out = CropAroundUnknown(keys=["alpha"], crop_sizes=[64, 97, 128])({"alpha": mapped}, rng)
        expected, bbox = plain_crop({"alpha": alpha}, [(64, 64), (97, 97), (128, 128)], plain_rng)
        assert out["crop_bbox"] == bbox
        assert_same_arrays(out, expected)
        assert_same_rng(rng, plain_rng)
    assert np.array_equal(np.fromfile(path, np.uint8).reshape(alpha.shape), alpha)


FLIP_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float16, np.float32, np.float64, np.int64, bool]
FLIP_SHAPES = [(5, 7), (6, 1, 3), (1, 9, 1), (7, 5, 1), (4, 6, 3), (3, 4, 5), (3, 4, 513), (2, 3, 4, 5), (0, 4, 3)]


@pytest.mark.parametrize("dtype", FLIP_DTYPES)
@pytest.mark.parametrize("direction", ["horizontal", "vertical"])
def test_flip_matches_numpy_copies(dtype, direction: str):
    gen = np.random.RandomState(0)
    axis = 1 if direction == "horizontal" else 0
    for shape in FLIP_SHAPES:
        image = (gen.random_sample(shape) * 300 - 20).astype(dtype)
        image.flags.writeable = False
        views = [image, image[::-1], image[:, 1:], image[1:, ::2]] if image.size else [image]
        results = {f"k{i}": view for i, view in enumerate(views)} | {"frames": list(views)}
        out = Flip(keys=[*results], flip_ratio=1.0, direction=direction)(dict(results), np.random.RandomState(0))
        flipped = [out[f"k{i}"] for i in range(len(views))]
        for got, frame, view in zip(flipped, out["frames"], views, strict=True):
            expected = np.ascontiguousarray(np.flip(view, axis=axis))
            for array in (got, frame):
                assert array.dtype == expected.dtype and array.shape == expected.shape, shape
                assert np.array_equal(array, expected) and array.flags.c_contiguous, shape


def as_pair(value) -> tuple:
    return (value, value + 1) if isinstance(value, int) else tuple(value)


def plain_trimap(alpha: np.ndarray, rng: np.random.RandomState, kernel_size, iterations=1, random=True) -> np.ndarray:
    """GenerateTrimap the straightforward way: 128 everywhere, then the two boolean-mask writes."""
    sizes, its = as_pair(kernel_size), as_pair(iterations)
    sizes = range(*sizes) if random else sizes
    kernels = [cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (s, s)) for s in sizes]
    if random:
        erode_k, dilate_k = rng.randint(len(kernels)), rng.randint(len(kernels))
        erode_it, dilate_it = rng.randint(*its), rng.randint(*its)
    else:
        (erode_k, dilate_k), (erode_it, dilate_it) = (0, 1), its
    eroded = cv2.erode(alpha, kernels[erode_k], iterations=int(erode_it))
    dilated = cv2.dilate(alpha, kernels[dilate_k], iterations=int(dilate_it))
    trimap = np.full_like(alpha, 128)
    trimap[eroded >= 255] = 255
    trimap[dilated <= 0] = 0
    return trimap


@pytest.mark.parametrize("case", range(200))
def test_generate_trimap_matches_plain_mask_writes(case: int):
    gen = np.random.RandomState(2000 + case)
    alpha = random_alpha(gen)
    if gen.randint(4) == 0:
        alpha = alpha.astype(np.float32) + gen.choice([0, 0.5], size=alpha.shape).astype(np.float32)
    settings = [dict(kernel_size=(1, 30)), dict(kernel_size=(3, 8), iterations=(1, 3)),
                dict(kernel_size=(int(gen.randint(1, 9)), int(gen.randint(1, 9))), iterations=int(gen.randint(1, 3)),
                     random=False)]
    seed = int(gen.randint(2**32))
    for kwargs in settings:
        rng, plain_rng = np.random.RandomState(seed), np.random.RandomState(seed)
        out = GenerateTrimap(**kwargs)({"alpha": alpha}, rng)
        expected = plain_trimap(alpha, plain_rng, **kwargs)
        assert_same_arrays(out, {"trimap": expected})
        assert_same_rng(rng, plain_rng)


def plain_chw(value: np.ndarray) -> torch.Tensor:
    """image_to_tensor the straightforward way: torch's permute, then a contiguous copy."""
    array = value[:, :, None] if value.ndim == 2 else value
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def same_strides(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same memory layout: equal strides along every dimension longer than 1 (a length-1 one has no step)."""
    return all(x == y for x, y, n in zip(a.stride(), b.stride(), a.shape, strict=True) if n > 1)


PACK_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float16, np.float32, np.float64, np.int64, bool]
PACK_SHAPES = [(5, 7), (5, 7, 1), (5, 7, 2), (6, 4, 3), (5, 7, 4), (4, 3, 512), (4, 3, 513), (0, 3, 3), (3, 0, 3)]


@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")
@pytest.mark.parametrize("dtype", PACK_DTYPES)
def test_image_to_tensor_matches_permute_and_copy(dtype):
    gen = np.random.RandomState(0)
    for shape in PACK_SHAPES:
        image = (gen.random_sample(shape) * 300 - 20).astype(dtype)
        image.flags.writeable = False
        for view in (image, image[::-1], image[:, 1:], np.asfortranarray(image)):
            got, expected = image_to_tensor(view), plain_chw(view)
            assert got.dtype == expected.dtype and got.shape == expected.shape, shape
            assert torch.equal(got, expected) and got.is_contiguous() and same_strides(got, expected), shape
    frames = [gen.randint(0, 256, (4, 6, 3)).astype(dtype) for _ in range(3)]
    assert torch.equal(image_to_tensor(frames), torch.stack([plain_chw(f) for f in frames]))
