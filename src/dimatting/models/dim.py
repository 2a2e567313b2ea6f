"""DIM: encoder-decoder + optional refiner, with the reference's stage semantics.

Stages (train_cfg): (train_backbone, train_refiner) = (True, False) trains the encoder-decoder,
(False, True) trains only the refiner on a frozen encoder-decoder, (True, True) fine-tunes everything.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dimatting.models.preprocessor import UNKNOWN_VALUE, MattorPreprocessor

SIZE_DIVISOR = 32


def reflect_pad_to_multiple(x: Tensor, divisor: int = SIZE_DIVISOR) -> Tensor:
    """Reflect-pad bottom and right to the next multiple of `divisor` (the reference's test-time padding).

    A side shorter than the pad it needs is padded in several reflect steps (the reference would fail);
    a side of length 1 can only be replicated.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % divisor, -width % divisor
    while pad_h or pad_w:
        step_h = min(pad_h, x.shape[-2] - 1)
        step_w = min(pad_w, x.shape[-1] - 1)
        if (pad_h and step_h == 0) or (pad_w and step_w == 0):
            return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return x


def clamp_to_trimap(pred: Tensor, ori_trimap: Tensor) -> Tensor:
    """HxW network output -> float alpha: clamped to [0, 1], exactly 1/0 where the trimap is 255/0."""
    pred = pred.clamp(0, 1)
    pred = torch.where(ori_trimap == 255, torch.ones_like(pred), pred)
    return torch.where(ori_trimap == 0, torch.zeros_like(pred), pred)


def postprocess_alpha(pred: Tensor, ori_trimap: Tensor) -> Tensor:
    """HxW float alpha -> HxW uint8 as the reference returns it: `clamp_to_trimap`, x255, round half to even."""
    return (clamp_to_trimap(pred, ori_trimap) * 255).round().to(torch.uint8)


class DIM(nn.Module):
    """Deep Image Matting model. Sub-modules arrive built (see `dimatting.registry.build`)."""

    def __init__(
        self,
        data_preprocessor: nn.Module | None = None,
        backbone: nn.Module | None = None,
        refiner: nn.Module | None = None,
        train_cfg: dict | None = None,
        test_cfg: dict | None = None,
        loss_alpha: nn.Module | None = None,
        loss_comp: nn.Module | None = None,
        loss_refine: nn.Module | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if backbone is None:
            raise ValueError("DIM needs a backbone")
        self.data_preprocessor = data_preprocessor or MattorPreprocessor()
        self.backbone = backbone
        self.refiner = refiner
        train_cfg = dict(train_cfg or {})
        test_cfg = dict(test_cfg or {})
        self.train_backbone = bool(train_cfg.get("train_backbone", True))
        self.train_refiner = bool(train_cfg.get("train_refiner", refiner is not None)) and refiner is not None
        self.refine = bool(test_cfg.get("refine", refiner is not None)) and refiner is not None
        if test_cfg.get("resize_method", "pad") != "pad":
            raise NotImplementedError("only test_cfg.resize_method='pad' (the DIM configs' choice) is implemented")
        if test_cfg.get("size_divisor", SIZE_DIVISOR) != SIZE_DIVISOR:
            raise NotImplementedError("DIM needs test_cfg.size_divisor=32 (five 2x2 poolings)")
        if self.refine and not self.train_refiner and train_cfg:
            warnings.warn("refine=True at test time while the refiner is not trained", stacklevel=2)
        self.loss_alpha = loss_alpha
        self.loss_comp = loss_comp
        self.loss_refine = loss_refine
        self.init_cfg = init_cfg
        if not self.train_backbone:
            self.freeze_backbone()

    def freeze_backbone(self) -> None:
        """Stage 2: the encoder-decoder gets no gradients and stays in eval mode."""
        self.backbone.eval()
        for param in self.backbone.parameters():
            param.requires_grad_(False)

    def train(self, mode: bool = True) -> DIM:
        super().train(mode)
        if mode and not self.train_backbone:
            self.backbone.eval()
        return self

    def init_weights(self) -> None:
        """Fresh initialisation (Xavier-normal where the reference uses it)."""
        self.backbone.init_weights()
        if self.refiner is not None:
            self.refiner.init_weights()

    def forward(self, x: Tensor, refine: bool = True) -> tuple[Tensor, Tensor | None]:
        """x: normalised N×4×H×W (H, W multiples of 32) -> (sigmoid alpha, refined alpha or None)."""
        raw_alpha = self.backbone(x)
        pred_alpha = torch.sigmoid(raw_alpha)
        if not (refine and self.refiner is not None):
            return pred_alpha, None
        refine_input = torch.cat([x[:, :3], pred_alpha], dim=1)
        return pred_alpha, self.refiner(refine_input, raw_alpha)

    def compute_losses(
        self, x: Tensor, gt_alpha: Tensor, gt_fg: Tensor, gt_bg: Tensor, gt_merged: Tensor
    ) -> dict[str, Tensor]:
        """The stage's weighted losses on the unknown region of the (generated) trimap in x[:, 3]."""
        pred_alpha, pred_refine = self.forward(x, refine=self.train_refiner)
        weight = (x[:, 3:4] == UNKNOWN_VALUE).to(pred_alpha.dtype)
        losses: dict[str, Tensor] = {}
        if self.train_backbone:
            if self.loss_alpha is None or self.loss_comp is None:
                raise ValueError("training the encoder-decoder needs model.loss_alpha and model.loss_comp")
            losses["loss_alpha"] = self.loss_alpha(pred_alpha, gt_alpha, weight)
            losses["loss_comp"] = self.loss_comp(pred_alpha, gt_fg, gt_bg, gt_merged, weight)
        if self.train_refiner:
            if self.loss_refine is None:
                raise ValueError("training the refiner needs model.loss_refine")
            losses["loss_refine"] = self.loss_refine(pred_refine, gt_alpha, weight)
        return losses

    def predict(self, x: Tensor) -> Tensor:
        """Test-time path: reflect-pad to /32, forward, refined or raw alpha per test_cfg, crop back.

        Returns N×1×H×W float alpha before clamping/masking (see `postprocess_alpha`).
        """
        height, width = x.shape[-2:]
        pred_alpha, pred_refine = self.forward(reflect_pad_to_multiple(x), refine=self.refine)
        out = pred_refine if pred_refine is not None else pred_alpha
        return out[..., :height, :width]
