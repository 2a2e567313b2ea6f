"""MattorPreprocessor: image + trimap -> the network's 4-channel input, exactly as mmagic prepares it.

Images are ImageNet-normalised in RGB order on the 0-255 scale; the trimap channel is trimap/255, so the
unknown value is 128/255 (not 0.5), which is also how the training loss finds the unknown region.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
UNKNOWN_VALUE = 128 / 255


class MattorPreprocessor(nn.Module):
    """Normalise images and scale trimaps; mean/std are non-persistent buffers (absent from state dicts)."""

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        proc_trimap: str = "rescale_to_zero_one",
        **ignored: object,
    ) -> None:
        super().__init__()
        if proc_trimap not in ("rescale_to_zero_one", "as_is"):
            raise ValueError(f"proc_trimap must be 'rescale_to_zero_one' or 'as_is', got {proc_trimap!r}")
        self.proc_trimap = proc_trimap
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor, trimaps: Tensor, bgr: bool = True) -> Tensor:
        """Images N×3×H×W on the 0-255 scale (BGR as the data pipeline loads them, or RGB with `bgr=False`),
        trimaps N×1×H×W uint8 -> N×4×H×W float32 network input."""
        images = images.to(self.mean.device, torch.float32)
        if bgr:
            images = images.flip(1)
        images = (images - self.mean) / self.std
        trimaps = trimaps.to(self.mean.device, torch.float32)
        if self.proc_trimap == "rescale_to_zero_one":
            trimaps = trimaps / 255.0
        return torch.cat([images, trimaps], dim=1)

    @staticmethod
    def gt_to_rgb01(gt: Tensor, bgr: bool = True) -> Tensor:
        """Training targets (alpha N×1, fg/bg/merged N×3 in 0-255): RGB order, float32, divided by 255."""
        gt = gt.to(torch.float32)
        if bgr and gt.shape[1] == 3:
            gt = gt.flip(1)
        return gt / 255.0
