"""The benchmark scripts' own plumbing, on a CPU: a GPU machine is lent rarely and briefly, so a command line
that would only fail there is found here first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench_gpu_train(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_gpu_train

    yield bench_gpu_train
    sys.modules.pop("bench_gpu_train", None)


def test_the_whole_run_row_trains_the_stage1_config_on_a_synthetic_set(tmp_path: Path, bench_gpu_train) -> None:
    from dimatting.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "data", n_train=2, n_test=0, seed=0, size=(64, 96))
    result = bench_gpu_train.e2e_time("ours", 1, 2, tmp_path / "data", tmp_path / "work", str(tmp_path / "cache"))
    assert "error" not in result, result
    assert result["time"] > 0 and result["data_time"] >= 0
    assert (tmp_path / "cache").is_dir()  # given to tools/train.py (whether it fills depends on the disk's room)


def test_a_benchmark_replaces_only_its_own_results_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from results_file import write_section

    results = tmp_path / "results.md"
    results.write_text("# Results\n\n## Train\n\nold train\n\n## Train transforms\n\nkept \\1\n\n## Predict\n\nkept\n")
    write_section("## Train\n\nnew \\1 train\n", results)
    assert results.read_text() == ("# Results\n\n## Train\n\nnew \\1 train\n\n## Train transforms\n\nkept \\1\n\n"
                                   "## Predict\n\nkept\n")
    write_section("## Data loader\n\nrows", results)
    assert results.read_text().endswith("## Predict\n\nkept\n\n## Data loader\n\nrows\n")
    with pytest.raises(ValueError, match="## Title"):
        write_section("no heading", results)
