"""PlainRefiner of DIM: four 3x3 convs that correct the decoder's alpha in logit space."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dimatting.models.vgg import xavier_normal_


class PlainRefiner(nn.Module):
    """Input: normalised RGB + sigmoid alpha (4 channels, no trimap); output sigmoid(raw_alpha + delta).

    The residual is added to the decoder's *logits*, not to the alpha (facts trap 1).
    """

    def __init__(self, conv_channels: int = 64) -> None:
        super().__init__()
        self.refine_conv1 = nn.Conv2d(4, conv_channels, 3, padding=1)
        self.refine_conv2 = nn.Conv2d(conv_channels, conv_channels, 3, padding=1)
        self.refine_conv3 = nn.Conv2d(conv_channels, conv_channels, 3, padding=1)
        self.refine_pred = nn.Conv2d(conv_channels, 1, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, raw_alpha: Tensor) -> Tensor:
        out = self.relu(self.refine_conv1(x))
        out = self.relu(self.refine_conv2(out))
        out = self.relu(self.refine_conv3(out))
        return torch.sigmoid(raw_alpha + self.refine_pred(out))

    def init_weights(self) -> None:
        xavier_normal_(self)
