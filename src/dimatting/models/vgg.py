"""VGG16 encoder of DIM: 4 input channels (RGB + trimap), max-pooling that keeps its indices, conv6.

The pooling indices are the point of this encoder: the decoder unpools with them, so fine structure (hair)
returns to the exact pixel it came from. Module names follow mmagic (`layer1.0`, ..., `conv6`) so that
released checkpoints load with their keys unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn

# (number of 3x3 convs, output channels) per block, as in VGG16.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def xavier_normal_(module: nn.Module) -> None:
    """Xavier-normal weights (gain 1) and zero bias on every conv: mmengine's `xavier_init` default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight, gain=1.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VGG16(nn.Module):
    """Five conv blocks, each ending in a 2x2 max-pool that returns indices, then a 1x1 `conv6`.

    `init_cfg` is kept only to tell `init_weights` what to do: `None` means Xavier init; a `Pretrained`
    dict means the weights come from a file, which the training engine loads (models know no files).
    """

    def __init__(
        self,
        in_channels: int = 4,
        batch_norm: bool = False,
        aspp: bool = False,
        dilations: list[int] | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if aspp or dilations:
            raise NotImplementedError("VGG16 with ASPP/dilations is not used by DIM and not implemented")
        self.in_channels = in_channels
        self.batch_norm = batch_norm
        self.init_cfg = init_cfg
        channels = in_channels
        for block, (n_convs, out_channels) in enumerate(VGG16_BLOCKS, start=1):
            layers: list[nn.Module] = []
            for _ in range(n_convs):
                layers.append(nn.Conv2d(channels, out_channels, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out_channels))
                layers.append(nn.ReLU(inplace=True))
                channels = out_channels
            layers.append(nn.MaxPool2d(2, stride=2, return_indices=True))
            self.add_module(f"layer{block}", nn.Sequential(*layers))
        self.conv6 = nn.Conv2d(512, 512, 1)
        if batch_norm:
            self.bn = nn.BatchNorm2d(512)
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = 512

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Return the conv6 features as `out` and each block's pooling indices as `max_idx_1..5`."""
        outputs: dict[str, Tensor] = {}
        for block in range(1, len(VGG16_BLOCKS) + 1):
            layer = getattr(self, f"layer{block}")
            for module in layer[:-1]:
                x = module(x)
            x, outputs[f"max_idx_{block}"] = layer[-1](x)
        x = self.conv6(x)
        if self.batch_norm:
            x = self.bn(x)
        outputs["out"] = self.relu(x)
        return outputs

    def init_weights(self) -> None:
        """Xavier-normal init when no `init_cfg` is given (the reference's rule, facts trap 19)."""
        if self.init_cfg is None:
            xavier_normal_(self)
