"""The quickstart's extras: the trivial-matte baseline, its verdict, and the early total-time estimate."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from dimatting.engine import quickstart
from dimatting.engine.trainer import EarlyTiming

CFG = {"quickstart": {"synthetic": {"n_train": 200, "n_test": 20, "size": (192, 192)}, "test": True}}


def test_trivial_alpha_and_verdict() -> None:
    trimap = np.array([[0, 128, 255]], np.uint8)
    assert quickstart.trivial_alpha(trimap).tolist() == [[0.0, 0.5, 1.0]]
    assert quickstart.verdict(1.0, 4.0, True).endswith("ratio 0.250 (target <= 0.7: PASS)")
    assert quickstart.verdict(3.0, 4.0, True).endswith("ratio 0.750 (target <= 0.7: FAIL)")
    assert quickstart.verdict(3.0, 4.0, False).endswith("ratio 0.750")


def test_time_check_adds_training_validation_and_test(caplog: pytest.LogCaptureFixture) -> None:
    """146 iterations left at 2 s, 3 validations + 1 test of 20 images of 192² (a batch is 4 x 96²: each image
    costs a forward of the same pixels, a third of a step: 2/3 s), 10 s already spent: 292 + 53.3 + 10 s."""
    check = quickstart.TimeCheck(CFG, started=time.time() - 10)
    timing = EarlyTiming(seconds_per_iter=2.0, iterations_done=4, iterations_left=146, validations_left=3,
                         pixels_per_iter=4 * 96 * 96)
    assert check.total(timing) == pytest.approx(10 + 292 + 4 * 20 * 2 / 3, abs=0.5)
    with caplog.at_level(logging.INFO, logger="dimatting"):
        check(timing)
    assert "Quickstart: about 5 min 55 s in total on this machine (2.00 s per training iteration)" in caplog.text
    assert "WARNING" not in caplog.text


def test_time_check_names_the_option_when_over_budget(caplog: pytest.LogCaptureFixture) -> None:
    check = quickstart.TimeCheck(CFG, started=time.time() - 10)
    timing = EarlyTiming(seconds_per_iter=5.0, iterations_done=4, iterations_left=146, validations_left=3,
                         pixels_per_iter=4 * 96 * 96)
    with caplog.at_level(logging.INFO, logger="dimatting"):
        check(timing)
    # fixed part: 10 s + 4 x 20 x 5/3 s = 143.3 s; (600 - 143.3) / 5 = 91 more iterations after the 4 done
    assert "that is more than 10 min 0 s on this CPU" in caplog.text
    assert "--cfg-options train_cfg.max_iters=95" in caplog.text
