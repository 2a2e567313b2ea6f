"""The seed's three stages in sequence (shortened), chained through `init_from`, then tools/test.py.

Runs in a temporary cwd, because chaining looks in ./work_dirs/<previous stage's config stem>/ as the
reference's default work dirs do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dimatting.data.synthetic import make_synthetic
from dimatting.io import read_gray
from tests.e2e.helpers import CONFIGS, STAGES, run_tool, tiny_stage_options

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cwd after training stages 1, 2, 3 for two iterations each."""
    cwd = tmp_path_factory.mktemp("stages")
    make_synthetic(cwd / "data" / "tiny", n_train=4, n_test=2, seed=0, size=(64, 64))
    for stage in STAGES:
        run_tool("train.py", CONFIGS / f"{stage}.py", "--cfg-options", *tiny_stage_options("data/tiny"), cwd=cwd)
    return cwd


def test_stages_write_the_reference_work_dir_layout(chained: Path) -> None:
    for stage in STAGES:
        work_dir = chained / "work_dirs" / stage
        assert (work_dir / "iter_2.pth").is_file()
        assert (work_dir / "best_SAD_iter_2.pth").is_file()
        assert Path((work_dir / "last_checkpoint").read_text().strip()).name == "iter_2.pth"
        assert (work_dir / f"{stage}.py").is_file()
        (log_dir,) = [p for p in work_dir.iterdir() if p.is_dir()]
        log = (log_dir / f"{log_dir.name}.log").read_text()
        assert "Iter(train) [2/2]  lr: 1.0000e-05" in log
        assert "Iter(val) [2/2]    SAD: " in log
        lines = [json.loads(x) for x in (log_dir / "vis_data" / "scalars.json").read_text().splitlines()]
        assert {"SAD", "MattingMSE", "GradientError", "ConnectivityError"} <= lines[-1].keys()
        ckpt = torch.load(work_dir / "iter_2.pth", weights_only=True)
        assert list(ckpt)[:3] == ["meta", "state_dict", "optimizer"]
        assert ckpt["meta"]["iter"] == 2 and ckpt["meta"]["seed"] == 0
        n_tensors = 42 if stage == STAGES[0] else 50
        assert len(ckpt["state_dict"]) == n_tensors


def test_stage2_starts_from_stage1_and_trains_only_the_refiner(chained: Path) -> None:
    stage1 = torch.load(chained / "work_dirs" / STAGES[0] / "best_SAD_iter_2.pth", weights_only=True)
    stage2 = torch.load(chained / "work_dirs" / STAGES[1] / "iter_2.pth", weights_only=True)
    for key, value in stage1["state_dict"].items():
        assert torch.equal(value, stage2["state_dict"][key]), f"stage 2 changed the frozen {key}"
    stage3 = torch.load(chained / "work_dirs" / STAGES[2] / "iter_2.pth", weights_only=True)
    changed = [k for k, v in stage2["state_dict"].items() if not torch.equal(v, stage3["state_dict"][k])]
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("refiner.") for k in changed)
    log2 = next((chained / "work_dirs" / STAGES[1]).glob("*/*.log")).read_text()
    assert f"Load checkpoint from work_dirs/{STAGES[0]}/best_SAD_iter_2.pth" in log2
    (train_line,) = [line for line in log2.splitlines() if "Iter(train) [2/2]" in line]
    assert "loss_refine" in train_line and "loss_alpha" not in train_line


def test_tools_test_scores_the_stage3_checkpoint(chained: Path) -> None:
    checkpoint = chained / "work_dirs" / STAGES[2] / "best_SAD_iter_2.pth"
    out, mattes = chained / "results.json", chained / "mattes"
    proc = run_tool("test.py", CONFIGS / f"{STAGES[2]}.py", checkpoint, "--out", out, "--save-path", mattes,
                    "--cfg-options", *tiny_stage_options("data/tiny"), cwd=chained)
    assert "Iter(test) [2/2]    SAD: " in proc.stdout
    result = json.loads(out.read_text())
    assert result["protocol"] == "mmagic" and result["n"] == 2
    assert list(result["mean"]) == ["SAD", "MSE", "GRAD", "CONN"]
    assert len(result["images"]) == 2
    assert result["mean"]["SAD"] == pytest.approx(np.mean([v["SAD"] for v in result["images"].values()]))
    names = sorted(p.stem for p in mattes.glob("*.png"))
    assert names == sorted(result["images"])
    assert read_gray(mattes / f"{names[0]}.png").shape == (64, 64)
    assert f"SAD: {result['mean']['SAD']:.4f}" in proc.stdout
    assert "for alpha=0.5 in the unknown region: ratio" in proc.stdout and "target" not in proc.stdout


def test_chaining_without_the_previous_stage_says_what_to_run(tmp_path: Path) -> None:
    proc = run_tool("train.py", CONFIGS / f"{STAGES[1]}.py", "--cfg-options", *tiny_stage_options("data/none"),
                    cwd=tmp_path, check=False)
    assert proc.returncode == 2
    message = proc.stderr.strip().splitlines()[-1]
    assert f"python tools/train.py configs/dim/{STAGES[0]}.py" in message and "load_from=" in message


def test_missing_pretrained_vgg16_names_the_url_the_cache_and_the_option(tmp_path: Path) -> None:
    """No VGG16 file anywhere and torchvision's host unreachable (conftest's refusing proxy): one line."""
    make_synthetic(tmp_path / "data" / "tiny", n_train=2, n_test=1, seed=0, size=(64, 64))
    options = [o for o in tiny_stage_options("data/tiny") if "init_cfg" not in o]
    proc = run_tool("train.py", CONFIGS / f"{STAGES[0]}.py", "--cfg-options", *options, cwd=tmp_path, check=False,
                    env={"HOME": str(tmp_path), "DIMATTING_PRETRAINED": "", "TORCH_HOME": str(tmp_path / "th")})
    assert proc.returncode == 2
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: https://download.pytorch.org/models/vgg16-397923af.pth: download failed: ")
    assert f"download it by hand to {tmp_path / 'th' / 'hub' / 'checkpoints' / 'vgg16-397923af.pth'}" in message
    assert "model.backbone.encoder.init_cfg=None" in message and "Traceback" not in proc.stderr
    assert not (tmp_path / "th" / "hub" / "checkpoints" / "vgg16-397923af.pth").exists()


def test_tools_test_with_a_subset_of_the_metrics(chained: Path) -> None:
    """`test_evaluator=[dict(type='SAD')]`: the table, the log line and the json hold SAD only."""
    config = chained / "sad_only.py"
    config.write_text(f"_base_ = ['{CONFIGS / (STAGES[2] + '.py')}']\ntest_evaluator = [dict(type='SAD')]\n")
    checkpoint = chained / "work_dirs" / STAGES[2] / "best_SAD_iter_2.pth"
    proc = run_tool("test.py", config, checkpoint, "--out", chained / "sad.json",
                    "--cfg-options", *tiny_stage_options("data/tiny"), cwd=chained)
    result = json.loads((chained / "sad.json").read_text())
    assert list(result["mean"]) == ["SAD"] and all(list(v) == ["SAD"] for v in result["images"].values())
    table = proc.stdout.split("protocol: mmagic\n")[1].splitlines()
    assert table[0].split() == ["image", "SAD"]
    assert table[2].split() == ["mean", "(n=2)", f"{result['mean']['SAD']:.4f}"]
    assert f"Iter(test) [2/2]    SAD: {result['mean']['SAD']:.4f}  data_time" in proc.stdout
