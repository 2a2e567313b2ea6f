"""The benchmark scripts' own plumbing, on a CPU: a GPU machine is lent rarely and briefly, so a command line
that would only fail there is found here first."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def benchmark_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """benchmarks/ importable for the block; the benchmark modules it imported are dropped again afterwards (not
    the library's: a second copy of a torch module breaks it), so each test imports them afresh."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if Path(getattr(sys.modules[name], "__file__", None) or "/").parent == ROOT / "benchmarks":
            del sys.modules[name]


@pytest.fixture
def bench_gpu_train(monkeypatch: pytest.MonkeyPatch):
    with benchmark_modules(monkeypatch):
        import bench_gpu_train

        yield bench_gpu_train


@pytest.fixture
def bench_gpu(monkeypatch: pytest.MonkeyPatch):
    with benchmark_modules(monkeypatch):
        import bench_gpu

        yield bench_gpu


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
    with benchmark_modules(monkeypatch):
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


def test_the_gpu_benchmarks_share_the_budget_module(bench_gpu, bench_gpu_train) -> None:
    import budget

    for module in (bench_gpu, bench_gpu_train):
        assert (module.Budget, module.Report, module.hard_stop) == (budget.Budget, budget.Report, budget.hard_stop)
    assert bench_gpu_train.step_label("ours", 16) == "step b16 ours"


@pytest.mark.slow
def test_the_cpu_smoke_run_of_bench_gpu_completes_with_its_eager_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_gpu) -> None:
    out = tmp_path / "gpu.md"
    # the documented smoke run made smaller; --budget-s below COMPILE_ALLOWANCE_S skips the compiled mode
    assert bench_gpu.COMPILE_ALLOWANCE_S > 50
    run_main(bench_gpu, monkeypatch, "--sizes", "64", "--folder", "1x64", "--runs", "1", "--budget-s", "50",
             "--out", str(out))
    text = out.read_text()
    rows = [line.split(" | ")[:3] for line in text.splitlines() if line.startswith("| 64²") or line.startswith("| 1 x")]
    assert [row[:2] for row in rows] == [["| 64²", "reference-fp32"], ["| 64²", "ours"], ["| 64²", "ours-fp32"],
                                         ["| 64²", "ours-bf16"], ["| 1 x 64²", "default"], ["| 1 x 64²", "default"],
                                         ["| 64²", "ours-bf16-compiled"]]
    assert all(row[2].startswith("**") for row in rows[:4]) and all("failed" not in row for row in rows)
    last = text.rstrip().splitlines()[-1]
    assert last.startswith("Completed in ")
    assert last.endswith("s; skipped for the budget: `predict 64² ours-bf16-compiled`.")


def test_bench_gpu_rows_whose_inputs_fail_are_failed_rows_and_the_rest_still_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_gpu) -> None:
    def inputs(size: int):
        raise OSError(f"no input at {size}")

    monkeypatch.setattr(bench_gpu, "inputs", inputs)
    out = tmp_path / "gpu.md"
    run_main(bench_gpu, monkeypatch, "--sizes", "64", "--folder", "1x64", "bad", "--budget-s", "50",
             "--out", str(out))
    text = out.read_text()
    assert text.count("| failed: OSError: no input at 64 |") == 6  # every eager mode, both folder rows
    assert text.count("| 1 x 64² | default | 0 | failed: OSError: no input at 64 |") == 1
    assert text.count("| bad² | default | default | failed: ValueError: ") == 1  # a spec that does not parse
    assert text.count(" failed: ") == 8
    assert text.rstrip().splitlines()[-1].startswith("Completed in ")


def test_a_bad_training_row_is_a_failed_row_and_the_others_still_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_gpu_train) -> None:
    import dimatting.data.synthetic

    def child(args: list[str], timeout: float) -> dict:
        if args[0] == "reference":
            raise ValueError("Expecting value: line 1 column 1 (char 0)")  # the child's last line was no JSON
        return {"seconds": 0.2}  # no "first"

    made = []

    def make_synthetic(*args, **kwargs) -> None:
        made.append(args[0])
        if len(made) == 1:
            raise OSError("disk full")

    monkeypatch.setattr(bench_gpu_train, "run_child", child)
    monkeypatch.setattr(bench_gpu_train, "e2e_time", lambda *args: {"time": 0.3})  # no "data_time"
    monkeypatch.setattr(dimatting.data.synthetic, "make_synthetic", make_synthetic)
    out = tmp_path / "train.md"
    run_main(bench_gpu_train, monkeypatch, "--budget-s", "100", "--batches", "1", "--modes", "reference", "ours",
             "--e2e-modes", "ours", "--out", str(out))
    text = out.read_text()
    assert "| step b1 | reference | failed: ValueError: Expecting value: line 1 column 1 (char 0) |" in text
    assert "| step b1 | ours | failed: KeyError: 'first' |" in text
    assert "| tools/train.py b1 1080x1440, cache | ours | failed: OSError: disk full |" in text
    assert "| tools/train.py b1 1080x1440, decoding | ours | failed: KeyError: 'data_time' |" in text
    assert len(made) == 2  # the set is made again after a failed attempt
    assert text.rstrip().splitlines()[-1].startswith("Completed in ") and "did not" not in text


def test_bf16_accuracy_writes_its_table_with_a_status_line_and_skips_what_the_budget_cannot_fit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_gpu) -> None:
    from dimatting.data.synthetic import make_synthetic

    make_synthetic(tmp_path / "data", n_train=0, n_test=1, seed=0, size=(64, 64))
    ckpt = bench_gpu.stage3_checkpoint(tmp_path / "stage3.pth")
    import bf16_accuracy

    out = tmp_path / "acc.md"
    # --compile with less budget than the compiled mode needs to start: listed as skipped, not compiled
    run_main(bf16_accuracy, monkeypatch, "--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--compile",
             "--budget-s", "30", "--out", str(out))
    lines = out.read_text().rstrip().splitlines()
    assert lines[:4] == [f"`{ckpt}` on 1 test images of {tmp_path / 'data'} (cpu):", "",
                         "| precision | mean abs d-alpha (unknown) | max | SAD | SAD change | seconds |",
                         "|---|---|---|---|---|---|"]
    assert lines[4].startswith("| fp32 (reference) | - | - | ") and lines[5].startswith("| bf16 | ")
    assert lines[6].startswith("| bf16-compiled | skipped: budget (")
    assert lines[-1].startswith("Completed in ") and lines[-1].endswith("skipped for the budget: `bf16-compiled`.")


def test_bench_gpu_runs_only_the_modes_asked_for(bench_gpu) -> None:
    import argparse

    args = argparse.Namespace(sizes=[1024, 4096], modes=["reference-tf32", "ours-bf16", "ours-bf16-compiled"],
                              device="cuda")
    assert bench_gpu.predict_plan(args, False) == [(1024, "reference-tf32"), (1024, "ours-bf16"),
                                                   (4096, "reference-tf32"), (4096, "ours-bf16")]
    assert bench_gpu.predict_plan(args, True) == [(1024, "ours-bf16-compiled"), (4096, "ours-bf16-compiled")]
