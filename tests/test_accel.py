"""torch.compile with an eager fallback, TF32 switches, and results that may still be on their way."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from dimatting import accel
from dimatting.accel import CompiledOrEager, PendingAlpha, compile_mode, tf32_allowed
from dimatting.errors import InputError


@pytest.fixture(autouse=True)
def _propagate_logs(monkeypatch):
    monkeypatch.setattr(logging.getLogger("dimatting"), "propagate", True)


def test_compile_modes():
    assert compile_mode(False) is None and compile_mode(None) is None
    assert compile_mode(True) == "default" and compile_mode("reduce-overhead") == "reduce-overhead"
    with pytest.raises(InputError, match="--compile fast: unknown mode; use one of default, reduce-overhead"):
        compile_mode("fast")


def test_a_failing_compilation_warns_once_and_runs_eagerly(monkeypatch, caplog):
    calls = []

    def broken_compile(fn, **kwargs):
        calls.append(kwargs)

        def compiled(*args):
            raise RuntimeError("InductorError: no working C++ compiler\nmore details")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    double = CompiledOrEager(lambda t: t * 2, "default")
    assert calls == [{"mode": "default", "dynamic": False}]
    with caplog.at_level(logging.WARNING):
        assert torch.equal(double(torch.ones(2)), torch.full((2,), 2.0))
        assert torch.equal(double(torch.ones(3)), torch.full((3,), 2.0))
    assert caplog.text.count("torch.compile (mode default) failed") == 1
    assert "RuntimeError: InductorError: no working C++ compiler" in caplog.text


def test_out_of_memory_is_not_a_compilation_failure(monkeypatch):
    def compiled(*args):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: compiled)
    with pytest.raises(torch.OutOfMemoryError):
        CompiledOrEager(lambda t: t, "default")(torch.ones(1))


def test_uncompiled_calls_the_function():
    assert CompiledOrEager(lambda t: t + 1, None).compiled is None


def test_tf32_switches_are_restored_and_nothing_else_changes(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    for allowed in (True, False):
        with tf32_allowed(allowed):
            assert torch.backends.cudnn.allow_tf32 is allowed
            assert torch.backends.cuda.matmul.allow_tf32 is allowed
            assert torch.backends.cudnn.benchmark  # a caller's choice
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_pending_alpha_on_the_cpu_is_ready():
    pending = PendingAlpha.from_tensor(torch.arange(6, dtype=torch.uint8).view(2, 3))
    np.testing.assert_array_equal(pending.result(), np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert PendingAlpha(np.zeros(2)).result().shape == (2,)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_pending_alpha_waits_for_its_own_gpus_copy():
    """An alpha on cuda:1 while cuda:0 is current: the pending copy is tracked on cuda:1's stream, so it is not
    done while cuda:1 is still busy (an event on cuda:0's idle stream would be), and `result()` waits for it."""
    with torch.cuda.device(1):
        torch.cuda._sleep(2_000_000_000)  # about a second of GPU time queued before the alpha is made
        values = torch.arange(1 << 20, device="cuda:1").remainder_(251).to(torch.uint8)
    pending = PendingAlpha.from_tensor(values)
    assert not pending._event.query()
    np.testing.assert_array_equal(pending.result(), (np.arange(1 << 20) % 251).astype(np.uint8))


def test_available_cuda_memory_counts_the_allocators_idle_cache(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10, 100))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 50)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 20)
    assert accel.cuda_available_bytes(torch.device("cuda")) == 40
