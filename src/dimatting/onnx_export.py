"""Export DIM to ONNX (for onnxruntime), with the same math as the PyTorch model.

`torch.onnx.export` (TorchScript exporter) cannot trace `F.max_unpool2d` in torch 2.13 (its output-size
check fails on traced sizes), so for export only the decoder's unpooling is swapped for the equivalent
scatter: each pooled value goes back to the flat position its index names, everything else is zero.
The exported graph takes the normalised, /32-padded N×4×H×W input and returns the prediction (the refined
alpha for stage 2/3 checkpoints), with dynamic H and W.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor, nn

from dimatting.io import atomic_path
from dimatting.models import DIM

ONNX_OPSET = 17


class ScatterUnpool2d(nn.Module):
    """2x2/stride-2 max-unpooling written as a scatter (traceable; same result as nn.MaxUnpool2d)."""

    def forward(self, x: Tensor, indices: Tensor) -> Tensor:
        n, c, h, w = x.shape
        out = torch.zeros(n, c, 4 * h * w, dtype=x.dtype, device=x.device)
        return out.scatter(2, indices.flatten(2), x.flatten(2)).view(n, c, 2 * h, 2 * w)


class _Prediction(nn.Module):
    def __init__(self, model: DIM) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        pred_alpha, pred_refine = self.model(x, refine=self.model.refine)
        return pred_refine if pred_refine is not None else pred_alpha


def export_onnx(model: DIM, path: str | os.PathLike) -> None:
    """Write `model` (eval, CPU) as an ONNX file atomically; metadata records whether it refines."""
    import onnx

    decoder = model.backbone.decoder
    original = decoder.max_unpool2d
    decoder.max_unpool2d = ScatterUnpool2d()
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is deprecated, but the torch.export one needs onnxscript (not a dependency)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                _Prediction(model.eval().cpu()), (torch.zeros(1, 4, 64, 64),), str(tmp), dynamo=False,
                opset_version=ONNX_OPSET, input_names=["x"], output_names=["alpha"],
                dynamic_axes={"x": {0: "n", 2: "height", 3: "width"}, "alpha": {0: "n", 2: "height", 3: "width"}},
            )
            proto = onnx.load(str(tmp))
            entry = proto.metadata_props.add()
            entry.key, entry.value = "dimatting_refine", str(int(model.refine))
            onnx.save(proto, str(tmp))
    finally:
        decoder.max_unpool2d = original
