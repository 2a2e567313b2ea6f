"""Test helper: the golden deterministic DIM weights from ../shared/reference/golden/weights.py.

The golden outputs were produced by mmagic with these weights; filling our model with them and comparing
outputs is the parity check. weights.py is imported from ../shared at test time, never copied.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from dimatting.models import DIM, build_dim


def golden_state_dict(golden_dir: Path, model: DIM) -> dict[str, torch.Tensor]:
    """The golden tensors for `model`'s state-dict keys (their order is the golden key table's order)."""
    spec = importlib.util.spec_from_file_location("golden_weights_ref", golden_dir / "weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    keys_and_shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    arrays = module.golden_state_dict(keys_and_shapes)
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def golden_model(golden_dir: Path, stage: int) -> DIM:
    """A DIM for stage 1 (no refiner) or stage 3 (refiner, refine=True) filled with the golden weights."""
    model = build_dim(with_refiner=stage != 1)
    model.load_state_dict(golden_state_dict(golden_dir, model), strict=True)
    return model.eval()
