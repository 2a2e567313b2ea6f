"""PlainDecoder of DIM: 1x1 then 5x5 "deconv" convs (ordinary Conv2d), max-unpooling with encoder indices."""

from __future__ import annotations

from torch import Tensor, nn

from dimatting.models.vgg import xavier_normal_


class PlainDecoder(nn.Module):
    """Mirror of the VGG16 encoder; returns un-activated alpha logits (DIM applies the sigmoid)."""

    def __init__(self, in_channels: int = 512) -> None:
        super().__init__()
        self.deconv6_1 = nn.Conv2d(in_channels, 512, 1)
        self.deconv5_1 = nn.Conv2d(512, 512, 5, padding=2)
        self.deconv4_1 = nn.Conv2d(512, 256, 5, padding=2)
        self.deconv3_1 = nn.Conv2d(256, 128, 5, padding=2)
        self.deconv2_1 = nn.Conv2d(128, 64, 5, padding=2)
        self.deconv1_1 = nn.Conv2d(64, 64, 5, padding=2)
        self.deconv1 = nn.Conv2d(64, 1, 5, padding=2)
        self.relu = nn.ReLU(inplace=True)
        self.max_unpool2d = nn.MaxUnpool2d(kernel_size=2, stride=2)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        """Decode encoder outputs (`out`, `max_idx_1..5`); H and W must be multiples of 32."""
        unpool = self.max_unpool2d
        x = self.relu(self.deconv6_1(inputs["out"]))
        x = self.relu(self.deconv5_1(unpool(x, inputs["max_idx_5"])))
        x = self.relu(self.deconv4_1(unpool(x, inputs["max_idx_4"])))
        x = self.relu(self.deconv3_1(unpool(x, inputs["max_idx_3"])))
        x = self.relu(self.deconv2_1(unpool(x, inputs["max_idx_2"])))
        x = self.relu(self.deconv1_1(unpool(x, inputs["max_idx_1"])))
        return self.deconv1(x)

    def init_weights(self) -> None:
        xavier_normal_(self)
