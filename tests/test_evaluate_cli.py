"""`dim evaluate`: file pairing (stems, Comp-1k composite names, .npy), outputs, errors, the installed command."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dimatting.cli import main

STEMS = ["03_noisy", "04_blurred_consistent_gt", "08_unmasked_pred_raises"]


@pytest.fixture()
def dirs(golden_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Copies (in tmp_path) of three golden cases laid out as PRED_DIR, GT_DIR, TRIMAP_DIR."""
    out = []
    for kind in ("pred", "gt", "trimap"):
        folder = tmp_path / kind
        folder.mkdir()
        for stem in STEMS:
            shutil.copy(golden_dir / "metrics_cases" / kind / f"{stem}.png", folder / f"{stem}.png")
        out.append(folder)
    return out[0], out[1], out[2]


def _expected(golden_dir: Path) -> dict:
    images = json.loads((golden_dir / "metrics.json").read_text())["images"]
    images["08_unmasked_pred_raises"] = images["01_perfect_masked_gt"]  # masked 08 prediction == 01's
    return images


def test_evaluate_writes_table_csv_json(dirs, tmp_path: Path, golden_dir: Path, capsys) -> None:
    pred, gt, trimap = dirs
    out_json, out_csv = tmp_path / "out" / "m.json", tmp_path / "out" / "m.csv"
    rc = main(["evaluate", str(pred), str(gt), str(trimap), "--json", str(out_json), "--csv", str(out_csv),
               "--per-image"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "not masked" in captured.err and "08_unmasked_pred_raises" in captured.err
    assert all(stem in captured.out for stem in STEMS) and "mean (n=3)" in captured.out
    result = json.loads(out_json.read_text())
    assert result["protocol"] == "mmagic" and result["n"] == 3 and sorted(result["images"]) == STEMS
    expected = _expected(golden_dir)
    for stem in STEMS:
        for name in ("SAD", "MSE", "GRAD", "CONN"):
            assert result["images"][stem][name] == pytest.approx(expected[stem][name], rel=1e-6, abs=1e-9)
    for name in ("SAD", "MSE", "GRAD", "CONN"):
        assert result["mean"][name] == pytest.approx(np.mean([expected[s][name] for s in STEMS]), rel=1e-9)
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["name", "SAD", "MSE", "GRAD", "CONN"] and [r[0] for r in rows[1:]] == STEMS
    assert float(rows[1][1]) == result["images"][STEMS[0]]["SAD"]
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


def test_comp1k_composite_names_and_npy(dirs, tmp_path: Path, capsys) -> None:
    """Predictions named <fg>_<bg index> find <fg>.png in GT and trimap folders; .npy floats score the same."""
    pred, gt, trimap = dirs
    main(["evaluate", str(pred), str(gt), str(trimap), "--json", str(tmp_path / "a.json")])
    composite = tmp_path / "composite"
    composite.mkdir()
    for i, stem in enumerate(STEMS):
        alpha = cv2.imread(str(pred / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        np.save(composite / f"{stem}_{i}.npy", alpha / 255.0)
    assert main(["evaluate", str(composite), str(gt), str(trimap), "--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert sorted(b["images"]) == [f"{s}_{i}" for i, s in enumerate(STEMS)]
    for name in ("SAD", "MSE", "GRAD", "CONN"):
        assert b["mean"][name] == pytest.approx(a["mean"][name], rel=1e-9, abs=1e-12)


def test_missing_counterparts_listed(dirs, capsys) -> None:
    pred, gt, trimap = dirs
    (gt / f"{STEMS[0]}.png").unlink()
    (trimap / f"{STEMS[1]}.png").unlink()
    (trimap / f"{STEMS[2]}.png").unlink()
    assert main(["evaluate", str(pred), str(gt), str(trimap)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "1 of 3 predictions have no GT alpha" in err and STEMS[0] in err
    assert "2 of 3 predictions have no trimap" in err and STEMS[2] in err


def test_empty_or_missing_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty"), str(tmp_path), str(tmp_path)]) == 2
    assert "no predictions" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope"), str(tmp_path), str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_bad_trimap_names_the_file(dirs, capsys) -> None:
    pred, gt, trimap = dirs
    bad = cv2.imread(str(trimap / f"{STEMS[0]}.png"), cv2.IMREAD_GRAYSCALE)
    bad[0, :5] = [1, 2, 3, 4, 5]
    cv2.imwrite(str(trimap / f"{STEMS[0]}.png"), bad)
    assert main(["evaluate", str(pred), str(gt), str(trimap)]) == 2
    err = capsys.readouterr().err
    assert f"{STEMS[0]}.png" in err and "trimap" in err


def test_installed_command_matlab_protocol(dirs, tmp_path: Path) -> None:
    pred, gt, trimap = dirs
    dim = shutil.which("dim")
    command = [dim] if dim else [sys.executable, "-m", "dimatting.cli"]
    out = tmp_path / "m.json"
    proc = subprocess.run([*command, "evaluate", str(pred), str(gt), str(trimap), "--protocol", "matlab",
                           "--workers", "2", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "protocol: matlab" in proc.stdout and "mean (n=3)" in proc.stdout
    result = json.loads(out.read_text())
    assert result["protocol"] == "matlab" and result["n"] == 3
