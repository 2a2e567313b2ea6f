"""The benchmark scripts' own plumbing, on a CPU: a GPU machine is lent rarely and briefly, so a command line
that would only fail there is found here first."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench_gpu_train(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    before = set(sys.modules)
    import bench_gpu_train

    yield bench_gpu_train
    for name in ("bench_gpu_train", "bench_gpu", "bench_predict", "bench_train", "hostinfo", "results_file"):
        if name not in before:
            sys.modules.pop(name, None)


def test_the_whole_run_row_trains_the_stage1_config_on_a_synthetic_set(tmp_path: Path, bench_gpu_train) -> None:
    from dimatting.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "data", n_train=2, n_test=0, seed=0, size=(64, 96))
    result = bench_gpu_train.e2e_time("ours", 1, 2, tmp_path / "data", tmp_path / "work", str(tmp_path / "cache"))
    assert "error" not in result, result
    assert result["time"] > 0 and result["data_time"] >= 0
    assert (tmp_path / "cache").is_dir()  # given to tools/train.py (whether it fills depends on the disk's room)


def run_main(module, monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", [module.__file__, "--device", "cpu", *argv])
    module.main()


def test_a_tiny_budget_ends_the_run_early_and_the_table_names_what_did_not_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_gpu_train) -> None:
    given = []

    def child(args: list[str], timeout: float) -> dict:  # a row that runs into its time limit
        given.append((args[:2], timeout))
        time.sleep(timeout)
        return {"error": f"stopped after {timeout:.0f} s (what was left of the budget)"}

    monkeypatch.setattr(bench_gpu_train, "run_child", child)
    monkeypatch.setattr(bench_gpu_train, "MIN_START_S", dict.fromkeys(bench_gpu_train.MIN_START_S, 0))
    out = tmp_path / "train.md"
    run_main(bench_gpu_train, monkeypatch, "--budget-s", "2", "--batches", "1", "16", "--modes", "reference", "ours",
             "ours-compile", "--e2e-modes", "ours", "--out", str(out))
    assert [args for args, _ in given] == [["reference", "1"]]  # the first row used up the budget
    assert 0 < given[0][1] <= 2  # its time limit: what was left of the budget
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| step") or line.startswith("| tools/")]
    # eager reference and ours at both batch sizes first, then whole runs, compiled steps last
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| step b1", "reference"], ["| step b1", "ours"], ["| step b16", "reference"], ["| step b16", "ours"],
        ["| tools/train.py b1 1080x1440, cache", "ours"], ["| tools/train.py b16 1080x1440, cache", "ours"],
        ["| tools/train.py b1 1080x1440, decoding", "ours"], ["| tools/train.py b16 1080x1440, decoding", "ours"],
        ["| step b1", "ours-compile"], ["| step b16", "ours-compile"]]
    assert "failed: stopped after" in rows[0] and all("skipped: budget" in row for row in rows[1:])
    status = text.rstrip().splitlines()[-1]
    assert status.startswith("Completed") and "`step b1 ours`" in status and "`train.py b16 ours decoding`" in status
    assert "`step b16 ours-compile`" in status and "`step b1 reference`" not in status


def test_the_table_is_on_disk_after_every_row_and_a_whole_run_without_its_step_still_reports_its_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_gpu_train) -> None:
    out = tmp_path / "train.md"
    seen = {}

    def child(args: list[str], timeout: float) -> dict:
        seen[tuple(args[:2])] = out.read_text()  # what a kill at this moment would leave
        if args[0] == "reference":
            return {"seconds": 0.2, "first": 1.0, "peak_mb": math.nan}
        return {"error": "RuntimeError: boom"}

    def whole_run(mode, batch, iters, data_root, work, cache, timeout) -> dict:
        seen["whole run"] = out.read_text()
        return {"time": 0.3, "data_time": 0.01}

    import dimatting.data.synthetic

    monkeypatch.setattr(bench_gpu_train, "run_child", child)
    monkeypatch.setattr(bench_gpu_train, "e2e_time", whole_run)
    monkeypatch.setattr(dimatting.data.synthetic, "make_synthetic", lambda *a, **k: None)
    run_main(bench_gpu_train, monkeypatch, "--budget-s", "100", "--batches", "1", "--modes", "reference", "ours",
             "--e2e-modes", "ours", "--out", str(out))
    first = seen[("reference", "1")]
    assert "| step b1 | reference |" not in first and "**Cut short**" in first
    assert "while `step b1 reference` ran" in first and "`step b1 ours`, `train.py b1 ours cache`" in first
    second = seen[("ours", "1")]
    assert "| step b1 | reference | **200.0** | 1.00x |" in second
    assert "while `step b1 ours` ran" in second and "Not run: `train.py b1 ours cache`" in second
    assert "| step b1 | ours | failed: RuntimeError: boom |" in seen["whole run"]
    text = out.read_text()
    assert "| tools/train.py b1 1080x1440, cache | ours | **300.0** | 10.0 | - (no ratio: the `ours` step" in text
    assert text.rstrip().splitlines()[-1].startswith("Completed in")


def test_a_row_past_its_time_limit_is_stopped_with_the_processes_it_started(tmp_path: Path, bench_gpu_train) -> None:
    pid_file = tmp_path / "pid"
    script = ("import subprocess, sys, time\n"
              "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              f"open({str(pid_file)!r}, 'w').write(str(worker.pid))\n"
              "time.sleep(60)\n")
    # the worker holds the output pipes too: without the process group's kill this would wait for it
    result = bench_gpu_train.run_capped([sys.executable, "-c", script], 3)
    assert isinstance(result, str) and result.startswith("stopped after 3 s"), result
    stat = Path(f"/proc/{pid_file.read_text()}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX"  # gone, or a zombie


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
