"""The CPU a benchmark ran on, as results.md states it: model name, core count and the SIMD flags that decide
which kernels oneDNN, OpenCV and our compiled code pick (AVX2, AVX-512 variants, AMX, VNNI)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS_OF_INTEREST = ("avx2", "fma", "avx512", "amx", "avx_vnni")


def cpu_line() -> str:
    model, flags = platform.processor() or platform.machine(), []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = [f for f in value.split() if f.startswith(FLAGS_OF_INTEREST)]
                break
    simd = " ".join(flags) if flags else "no flags listed"
    no512 = "" if any(f.startswith("avx512") for f in flags) else ", no AVX-512"
    no_amx = "" if any(f.startswith("amx") for f in flags) else ", no AMX"
    return f"{model}, {os.cpu_count()} cores ({simd}{no512}{no_amx})"


def load_line(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    def fmt(values: tuple[float, ...]) -> str:
        return "/".join(f"{v:.2f}" for v in values)

    return f"load average (1/5/15 min) {fmt(before)} before, {fmt(after)} after"
