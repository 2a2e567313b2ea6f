"""Data: pipeline transforms, the Composition-1k dataset, its preparation and a synthetic stand-in.

`collate` batches packed samples (see `dimatting.data.transforms.PackInputs` for their layout). It is
imported on first use so that `dim make-synthetic` and `dim prepare-comp1k` start without loading torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["collate"]


def __getattr__(name: str) -> Any:
    if name == "collate":
        from dimatting.data.transforms import collate

        return collate
    raise AttributeError(f"module 'dimatting.data' has no attribute {name!r}")
