"""The quickstart command, shortened with --cfg-options: makes data/synthetic, trains, tests, prints the table.

The full run (and its SAD <= 0.7x baseline target) is timed by hand; see docs/training.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.helpers import QUICKSTART, run_tool, tiny_quickstart_options

pytestmark = pytest.mark.slow


def test_quickstart_makes_data_trains_and_reports_against_the_baseline(tmp_path: Path) -> None:
    options = [o for o in tiny_quickstart_options(4) if not o.startswith("quickstart.test")]
    proc = run_tool("train.py", QUICKSTART, "--cfg-options", *options, "train_cfg.val_interval=2", cwd=tmp_path)
    assert (tmp_path / "data" / "synthetic" / "training_list.json").is_file()
    assert "Making the synthetic dataset in data/synthetic" in proc.stdout
    work_dir = tmp_path / "work_dirs" / "dim_quickstart"
    assert (work_dir / "iter_3.pth").is_file() and (work_dir / "iter_4.pth").is_file()
    best = list(work_dir.glob("best_SAD_iter_*.pth"))
    assert len(best) == 1
    assert f"Testing {best[0].relative_to(tmp_path)} on the test set" in proc.stdout
    assert re.search(r"Iter\(test\) \[2/2\]    SAD: \d+\.\d{4}  MattingMSE: ", proc.stdout)
    pattern = r"SAD (\d+\.\d+) vs (\d+\.\d+) for alpha=0.5 in the unknown region: ratio (\d+\.\d+)"
    match = re.search(pattern, proc.stdout)
    assert match, proc.stdout[-2000:]
    sad, baseline, ratio = map(float, match.groups())
    assert f"ratio {ratio:.3f} (target <= 0.7: {'PASS' if ratio <= 0.7 else 'FAIL'})" in proc.stdout
    assert baseline > 0 and ratio == pytest.approx(sad / baseline, abs=1e-3)

    again = run_tool("train.py", QUICKSTART, "--work-dir", tmp_path / "again", "--cfg-options", *options,
                     cwd=tmp_path)
    assert "Making the synthetic dataset" not in again.stdout
