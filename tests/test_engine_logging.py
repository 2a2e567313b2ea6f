"""Log lines in the reference's format (facts §10.3/§10.4) and the 10-iteration smoothing window."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from dimatting.engine.logging import (
    JsonLines,
    Window,
    add_file_log,
    close_logs,
    eta_text,
    progress_line,
    setup_console,
    summary_line,
    train_line,
)


def test_train_line_matches_the_reference_layout() -> None:
    window = Window()
    window.update({"time": 6.1054, "data_time": 0.0103, "loss": 0.3040, "loss_alpha": 0.2339, "loss_comp": 0.0701})
    line = train_line(2, 6, 1e-5, 24.9, window, 950, ["loss_alpha", "loss_comp"])
    assert line == ("Iter(train) [2/6]  lr: 1.0000e-05  eta: 0:00:24  time: 6.1054  data_time: 0.0103  memory: 950  "
                    "loss: 0.3040  loss_alpha: 0.2339  loss_comp: 0.0701")
    assert train_line(100, 1_000_000, 1e-5, 0, window, 1, []).startswith("Iter(train) [    100/1000000]  ")


def test_val_and_test_lines_match_the_reference_layout() -> None:
    metrics = {"SAD": 5.47761, "MattingMSE": 0.19961, "GradientError": 21.26331, "ConnectivityError": 5.557}
    assert summary_line("test", 2, metrics, 0.0253, 4.2674) == (
        "Iter(test) [2/2]    SAD: 5.4776  MattingMSE: 0.1996  GradientError: 21.2633  ConnectivityError: 5.5570  "
        "data_time: 0.0253  time: 4.2674"
    )
    assert progress_line("val", 100, 1000, 100.2, 0.1, 0.01) == (
        "Iter(val) [ 100/1000]    eta: 0:01:40  time: 0.1000  data_time: 0.0100  "
    )
    assert eta_text(1_000_000) == "11 days, 13:46:40"


def test_window_keeps_the_last_ten_and_round_trips() -> None:
    window = Window()
    for i in range(15):
        window.update({"loss": float(i)})
    assert window.mean("loss") == sum(range(5, 15)) / 10
    assert Window(window.state()).state() == window.state()
    assert window.mean("absent") == 0.0


def test_file_log_has_a_four_digit_year_and_json_lines_append(tmp_path: Path) -> None:
    setup_console(True)
    path = add_file_log(tmp_path / "20260101_000000", "20260101_000000")
    logging.getLogger("dimatting").info("hello")
    close_logs()
    assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d - dimatting - INFO - hello\n", path.read_text())
    lines = JsonLines(tmp_path / "a" / "s.json", tmp_path / "b.json")
    lines.write({"x": 0.1 + 0.2})
    lines.write({"x": 1})
    for file in (tmp_path / "a" / "s.json", tmp_path / "b.json"):
        assert file.read_text() == '{"x": 0.30000000000000004}\n{"x": 1}\n'
