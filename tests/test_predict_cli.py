"""`dim predict`: single image, folders, cutouts, masks, and every kind of bad input."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dimatting.checkpoint import save_checkpoint
from dimatting.cli import main
from dimatting.io import read_gray, read_image
from tests.golden_weights import golden_model


@pytest.fixture(scope="module")
def ckpt(golden_dir, tmp_path_factory):
    """Stage-3 golden weights in an mmagic-shaped file."""
    path = tmp_path_factory.mktemp("ckpt") / "stage3.pth"
    save_checkpoint(path, {"meta": {"iter": 0}, "state_dict": golden_model(golden_dir, 3).state_dict()})
    return path


@pytest.fixture()
def crop(golden_dir):
    inputs = golden_dir / "inputs"
    return inputs / "crop157x211_merged.png", inputs / "crop157x211_trimap.png"


def predict(*argv) -> int:
    return main(["predict", *map(str, argv)])


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1
    return lines[0]


def test_single_image_matches_golden_png_with_cutout_and_trimap(golden_dir, ckpt, crop, tmp_path):
    out = tmp_path / "alpha.png"
    assert predict("--image", crop[0], "--trimap", crop[1], "--checkpoint", ckpt, "-o", out,
                   "--cutout", "--save-trimap", "--device", "cpu") == 0
    alpha = read_gray(out)
    golden = read_gray(golden_dir / "outputs" / "crop157x211_stage3.png").astype(np.int16)
    diff = np.abs(alpha.astype(np.int16) - golden)
    assert (diff == 0).mean() >= 0.95 and np.median(diff) == 0
    rgba = cv2.imread(str(tmp_path / "alpha_cutout.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (*alpha.shape, 4)
    np.testing.assert_array_equal(rgba[:, :, 3], alpha)
    # where the object is opaque, the estimated foreground is the photo itself
    opaque = alpha == 255
    photo = cv2.imread(str(crop[0]), cv2.IMREAD_COLOR)
    assert np.abs(rgba[:, :, :3][opaque].astype(int) - photo[opaque]).mean() < 2
    np.testing.assert_array_equal(read_gray(tmp_path / "alpha_trimap.png"), read_gray(crop[1]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha.png", "alpha_cutout.png", "alpha_trimap.png"]


def test_rgba_image_and_102_trimap_from_pymatting(data_dir, ckpt, tmp_path, capsys):
    out = tmp_path / "tiny_alpha.png"
    tiny = data_dir / "tiny"
    assert predict("--image", tiny / "test.png", "--trimap", tiny / "test_trimap.png",
                   "--checkpoint", ckpt, "-o", out, "--device", "cpu") == 0
    assert "unknown value 102 mapped to 128" in capsys.readouterr().err
    alpha = read_gray(out)
    trimap = read_gray(tiny / "test_trimap.png")
    assert alpha.shape == (32, 32)
    assert (alpha[trimap == 255] == 255).all() and (alpha[trimap == 0] == 0).all()


def test_grayscale_image(ckpt, crop, tmp_path):
    gray = tmp_path / "gray.png"
    cv2.imwrite(str(gray), cv2.imread(str(crop[0]), cv2.IMREAD_GRAYSCALE))
    assert predict("--image", gray, "--trimap", crop[1], "--checkpoint", ckpt, "-o", tmp_path / "a.png",
                   "--device", "cpu") == 0
    assert read_gray(tmp_path / "a.png").shape == (157, 211)


def test_mask_builds_the_trimap(ckpt, crop, tmp_path):
    trimap = read_gray(crop[1])
    mask = tmp_path / "mask.png"
    cv2.imwrite(str(mask), np.where(trimap >= 128, 255, 0).astype(np.uint8))
    assert predict("--image", crop[0], "--mask", mask, "--band", "6", "--checkpoint", ckpt,
                   "-o", tmp_path / "a.png", "--save-trimap", tmp_path / "t.png", "--device", "cpu") == 0
    built = read_gray(tmp_path / "t.png")
    assert set(np.unique(built)) == {0, 128, 255}
    alpha = read_gray(tmp_path / "a.png")
    assert (alpha[built == 0] == 0).all() and (alpha[built == 255] == 255).all()


def test_folder_mode_pairs_by_stem_and_lists_missing(ckpt, crop, data_dir, tmp_path, capsys):
    images, trimaps, masks, out = (tmp_path / d for d in ("img", "tri", "mask", "out"))
    for d in (images, trimaps, masks):
        d.mkdir()
    shutil.copy(crop[0], images / "a.png")
    shutil.copy(crop[1], trimaps / "a.png")
    shutil.copy(data_dir / "tiny" / "test.png", images / "b.png")
    shutil.copy(data_dir / "tiny" / "test_trimap.png", trimaps / "b.png")
    shutil.copy(crop[0], images / "c.png")  # no trimap, but a mask
    cv2.imwrite(str(masks / "c.png"), np.where(read_gray(crop[1]) >= 128, 255, 0).astype(np.uint8))
    shutil.copy(crop[0], images / "d.png")  # nothing: listed and skipped
    assert predict("--input-dir", images, "--trimap-dir", trimaps, "--mask-dir", masks, "--output-dir", out,
                   "--cutout", "--checkpoint", ckpt, "--device", "cpu") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a.png", "a_cutout.png", "b.png", "b_cutout.png", "c.png", "c_cutout.png"]
    err = capsys.readouterr().err
    assert "1 image(s) without a trimap or mask, skipped: d" in err
    assert read_gray(out / "c.png").shape == (157, 211) and read_gray(out / "b.png").shape == (32, 32)


def test_folder_mode_keeps_going_after_a_bad_pair(ckpt, crop, tmp_path, capsys):
    images, trimaps, out = (tmp_path / d for d in ("img", "tri", "out"))
    images.mkdir()
    trimaps.mkdir()
    shutil.copy(crop[0], images / "good.png")
    shutil.copy(crop[1], trimaps / "good.png")
    (images / "bad.png").write_bytes(b"not a png")
    shutil.copy(crop[1], trimaps / "bad.png")
    assert predict("--input-dir", images, "--trimap-dir", trimaps, "--output-dir", out,
                   "--checkpoint", ckpt, "--device", "cpu") == 1
    assert [p.name for p in out.iterdir()] == ["good.png"]
    assert "bad.png: cannot decode the image" in capsys.readouterr().err


def test_folder_results_do_not_depend_on_io_workers(ckpt, crop, tmp_path, capsys):
    """Reading ahead and writing behind in threads (the default with a GPU) changes nothing in the files,
    the failures or the exit status; the CPU's numerics are announced."""
    images, trimaps = tmp_path / "img", tmp_path / "tri"
    images.mkdir()
    trimaps.mkdir()
    for stem in ("a", "b", "c", "e"):
        shutil.copy(crop[0], images / f"{stem}.png")
        shutil.copy(crop[1], trimaps / f"{stem}.png")
    (images / "d.png").write_bytes(b"not a png")
    shutil.copy(crop[1], trimaps / "d.png")
    outputs = {}
    for workers in ("0", "3"):
        out = tmp_path / f"out{workers}"
        assert predict("--input-dir", images, "--trimap-dir", trimaps, "--output-dir", out, "--save-trimap",
                       "--checkpoint", ckpt, "--device", "cpu", "--io-workers", workers) == 1
        err = capsys.readouterr().err
        assert "weights on cpu, IEEE fp32" in err and "d.png: cannot decode the image" in err
        outputs[workers] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(outputs["0"]) == [f"{s}{k}.png" for s in "abce" for k in ("", "_trimap")]
    assert outputs["0"] == outputs["3"]
    assert predict("--input-dir", images, "--trimap-dir", trimaps, "--output-dir", tmp_path / "x",
                   "--checkpoint", ckpt, "--device", "cpu", "--io-workers", "-1") == 2
    assert "--io-workers -1: give a thread count >= 0" in error_line(capsys)


def _stray(crop, tmp_path):
    trimap = read_gray(crop[1]).copy()
    trimap[:3, :3] = 77
    path = tmp_path / "stray.png"
    cv2.imwrite(str(path), trimap)
    return path


def _no_unknown(crop, tmp_path):
    path = tmp_path / "known.png"
    cv2.imwrite(str(path), np.where(read_gray(crop[1]) >= 128, 255, 0).astype(np.uint8))
    return path


def test_trimap_tolerant_and_no_unknown(ckpt, crop, tmp_path, capsys):
    assert predict("--image", crop[0], "--trimap", _stray(crop, tmp_path), "--trimap-tolerant",
                   "--checkpoint", ckpt, "-o", tmp_path / "a.png", "--device", "cpu") == 0
    known = _no_unknown(crop, tmp_path)
    assert predict("--image", crop[0], "--trimap", known, "--checkpoint", ckpt, "-o", tmp_path / "b.png",
                   "--device", "cpu") == 0
    assert "known.png: no unknown pixels" in capsys.readouterr().err
    np.testing.assert_array_equal(read_gray(tmp_path / "b.png"), read_gray(known))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing image", r"nope\.png: file not found"),
        ("corrupt image", r"corrupt\.png: cannot decode the image"),
        ("size mismatch", r"small\.png: size 100x50 does not match"),
        ("stray trimap values", r"stray\.png: trimap has 9 pixels with values outside.*--trimap-tolerant"),
        ("corrupt checkpoint", r"broken\.pth: cannot read the checkpoint"),
        ("wrong model", r"resnet\.pth: none of its 1 tensors belongs to this model"),
        ("missing checkpoint", r"absent\.pth: checkpoint file not found"),
        ("unknown device", r"--device tpu: unknown device"),
        ("tf32 on the cpu", r"--precision tf32: TF32 is a CUDA tensor-core format; on the CPU use fp32 or bf16"),
        ("jpeg output", r"alpha\.jpg: -o must be a lossless image"),
        ("unknown compile mode", r"--compile fast: unknown mode; use one of default, reduce-overhead"),
    ],
)
def test_bad_input_is_one_line_nonzero_exit_and_no_output(case, expected, ckpt, crop, tmp_path, capsys):
    image, trimap, checkpoint, device, extra = crop[0], crop[1], ckpt, "cpu", []
    out = tmp_path / "out" / "alpha.png"
    if case == "missing image":
        image = tmp_path / "nope.png"
    elif case == "corrupt image":
        image = tmp_path / "corrupt.png"
        image.write_bytes(read_image(crop[0]).tobytes()[:500])
    elif case == "size mismatch":
        trimap = tmp_path / "small.png"
        cv2.imwrite(str(trimap), np.full((50, 100), 128, np.uint8))
    elif case == "stray trimap values":
        trimap = _stray(crop, tmp_path)
    elif case == "corrupt checkpoint":
        checkpoint = tmp_path / "broken.pth"
        checkpoint.write_bytes(ckpt.read_bytes()[:100000])
    elif case == "wrong model":
        import torch

        checkpoint = tmp_path / "resnet.pth"
        torch.save({"state_dict": {"fc.weight": torch.zeros(3, 3)}}, checkpoint)
    elif case == "missing checkpoint":
        checkpoint = tmp_path / "absent.pth"
    elif case == "unknown device":
        device = "tpu"
    elif case == "jpeg output":
        out = tmp_path / "out" / "alpha.jpg"
    elif case == "tf32 on the cpu":
        extra = ["--precision", "tf32"]
    elif case == "unknown compile mode":
        extra = ["--compile", "fast"]
    code = predict("--image", image, "--trimap", trimap, "--checkpoint", checkpoint, "-o", out,
                   "--cutout", "--device", device, *extra)
    assert code == 2
    line = error_line(capsys)
    assert re.search(expected, line), line
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_dim_script_subprocess(data_dir, ckpt, tmp_path):
    dim = shutil.which("dim") or pytest.fail("the `dim` script is not installed (pip install -e .)")
    tiny = data_dir / "tiny"
    out = tmp_path / "alpha.png"
    result = subprocess.run(
        [dim, "predict", "--image", str(tiny / "test.png"), "--trimap", str(tiny / "test_trimap.png"),
         "--checkpoint", str(ckpt), "-o", str(out), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and read_gray(out).shape == (32, 32)
    bad = subprocess.run([sys.executable, "-m", "dimatting.cli", "predict", "--image", str(tmp_path / "x.png"),
                          "--trimap", str(tiny / "test_trimap.png"), "--checkpoint", str(ckpt), "-o",
                          str(tmp_path / "y.png")], capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "y.png").exists()
