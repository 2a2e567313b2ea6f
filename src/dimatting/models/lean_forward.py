"""DIM's test-time forward over the model's own modules, lean in memory, with a bf16 mode that stays accurate.

`DIM.forward` serves training too: its encoder returns all five blocks' int64 pooling indices together
(244 bytes per input pixel) and they stay alive until the decoder returns. At test time each activation and
each block's indices are dropped as soon as they are consumed (ReLUs work in place), so the peak is one
layer's input plus its output at full resolution (two 64-channel maps) plus what must survive (the network
input, which the refiner reads, and the logits): 536 instead of 842 bytes per pixel for a stage-3 fp32 pass
(tests/live_bytes.py models it exactly). In fp32 the result equals `DIM.predict` bit for bit (same modules,
same operations in the same order).

bf16 (`to_bf16`, `precise_first_block`): what moves a bf16 alpha is not the rounding of values but max-pool
windows whose winner flips; the unpooling then puts decoder features elsewhere. Measured on trained
quickstart checkpoints, nearly all of it comes from the encoder, half of it from the first block (the two
full-resolution convs and their pooling), which holds 6% of the FLOPs. So that block runs in fp32 (TF32
on a GPU), in horizontal strips so its fp32 activations never exist at full size; the rest runs in bf16.
Its pooling keeps one-byte window positions (`dimatting.models.pooling`), so the strips need no index
arithmetic and the block's indices take 16 instead of 128 bytes per pixel. The 1-channel heads (`deconv1`,
the refiner's `refine_pred`) and the sigmoids run in fp32 as well: a bf16 alpha has 8 significant bits, which
near 1 alone would move it by up to 0.5/255.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dimatting.models.decoder import PlainDecoder
from dimatting.models.dim import DIM
from dimatting.models.encoder_decoder import SimpleEncoderDecoder
from dimatting.models.pooling import max_pool2x2, max_unpool2x2
from dimatting.models.refiner import PlainRefiner
from dimatting.models.vgg import VGG16, VGG16_BLOCKS

DECODER_CONVS = ("deconv5_1", "deconv4_1", "deconv3_1", "deconv2_1", "deconv1_1")
# pixels per strip of the precise first block: its fp32 temporaries are ~512 bytes per strip pixel (512 MiB)
STRIP_PIXELS = 2**20
# the fp32 heads convert their 64-channel bf16 input to fp32 a quarter at a time: 32 instead of 256 extra
# bytes per pixel at full resolution, so the head never sets the memory peak
HEAD_CHANNEL_GROUPS = 4


class LeanForward(nn.Module):
    """Test-time forward of a DIM (VGG16 encoder, plain decoder, optional plain refiner).

    `model` must be in eval mode; its parameters are used as they are (cast them for bf16 with `to_bf16`).
    The input is the padded N×4×H×W network input (H, W multiples of 32) in the parameters' dtype; the
    output is the N×1×H×W float32 alpha, refined when the model refines.
    """

    def __init__(self, model: DIM, precise_first_block: bool = False, strip_pixels: int = STRIP_PIXELS) -> None:
        super().__init__()
        backbone = model.backbone
        if not (
            isinstance(backbone, SimpleEncoderDecoder)
            and isinstance(backbone.encoder, VGG16)
            and isinstance(backbone.decoder, PlainDecoder)
            and (model.refiner is None or isinstance(model.refiner, PlainRefiner))
        ):
            raise TypeError("LeanForward supports DIM's VGG16 encoder, PlainDecoder and PlainRefiner only")
        if precise_first_block and backbone.encoder.batch_norm:
            raise TypeError("the precise first block (strips) supports VGG16 without batch norm only")
        self.model = model
        self.precise_first_block = precise_first_block
        self.strip_pixels = strip_pixels

    def forward(self, x: Tensor) -> Tensor:
        raw = self._backbone(x)
        refiner = self.model.refiner
        if not (self.model.refine and refiner is not None):
            return torch.sigmoid(raw)
        t = torch.cat([x[:, :3], torch.sigmoid(raw)], dim=1).to(refiner.refine_conv1.weight.dtype)
        t = refiner.relu(refiner.refine_conv1(t))
        t = refiner.relu(refiner.refine_conv2(t))
        t = refiner.relu(refiner.refine_conv3(t))
        return torch.sigmoid(raw + _head(refiner.refine_pred, t))

    def _backbone(self, x: Tensor) -> Tensor:
        """Encoder-decoder logits (float32), holding only the live activations and the pooling positions."""
        encoder: VGG16 = self.model.backbone.encoder
        decoder: PlainDecoder = self.model.backbone.decoder
        t, positions = x, []
        for block in range(1, len(VGG16_BLOCKS) + 1):
            layer = getattr(encoder, f"layer{block}")
            if block == 1 and self.precise_first_block:
                t, where = self._first_block_in_strips(x, encoder.layer2[0].weight.dtype)
            else:
                t = t.to(layer[0].weight.dtype)  # fp32 input or first block, bf16 weights
                for module in layer[:-1]:
                    t = module(t)
                t, where = layer[-1](t)
            positions.append(where)
        t = encoder.conv6(t)
        if encoder.batch_norm:
            t = encoder.bn(t)
        t = decoder.relu(decoder.deconv6_1(encoder.relu(t)))
        for name in DECODER_CONVS:
            where = positions.pop()
            unpooled = max_unpool2x2(t, where) if where.dtype == torch.uint8 else decoder.max_unpool2d(t, where)
            del t, where  # not needed while the conv runs: only its input and output are
            t = decoder.relu(getattr(decoder, name)(unpooled))
            del unpooled
        return _head(decoder.deconv1, t)

    def _first_block_in_strips(self, x: Tensor, out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """conv-ReLU-conv-ReLU-pool of `layer1` in its own (fp32) dtype, over horizontal strips of the input
        with a 2-row halo; -> pooled features in `out_dtype` and one-byte pooling positions."""
        conv1, conv2 = self.model.backbone.encoder.layer1[0], self.model.backbone.encoder.layer1[2]
        n, _, height, width = x.shape
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else None
        shape = (n, conv2.out_channels, height // 2, width // 2)
        pooled = torch.empty(shape, dtype=out_dtype, device=x.device, memory_format=layout or torch.contiguous_format)
        which = torch.empty_like(pooled, dtype=torch.uint8)
        rows = max(2, min(height, self.strip_pixels // width) // 2 * 2)
        x = x.to(conv1.weight.dtype)
        for y0 in range(0, height, rows):
            y1 = min(height, y0 + rows)
            lo, hi = max(0, y0 - 2), min(height, y1 + 2)
            # the image's zero padding above and below, as the whole-image convs would see it
            strip = F.pad(x[:, :, lo:hi], (0, 0, lo - (y0 - 2), (y1 + 2) - hi))
            h = F.relu_(F.conv2d(strip, conv1.weight, conv1.bias, padding=(0, 1)))  # rows y0-1 .. y1
            del strip
            if y0 == 0:
                h[:, :, 0] = 0  # above the image: conv2's zero padding, not conv1 applied to zeros
            if y1 == height:
                h[:, :, -1] = 0
            h = F.relu_(F.conv2d(h, conv2.weight, conv2.bias, padding=(0, 1)))  # rows y0 .. y1-1
            strip_pooled, strip_which = max_pool2x2(h)
            del h
            pooled[:, :, y0 // 2 : y1 // 2] = strip_pooled
            which[:, :, y0 // 2 : y1 // 2] = strip_which
        return pooled, which


def _head(conv: nn.Conv2d, t: Tensor) -> Tensor:
    """A 1-channel output conv in fp32: directly when `t` is fp32, else over channel groups of `t` cast up."""
    if t.dtype == conv.weight.dtype:
        return conv(t)
    step = t.shape[1] // HEAD_CHANNEL_GROUPS
    out = F.conv2d(t[:, :step].float(), conv.weight[:, :step], conv.bias, padding=conv.padding)
    for start in range(step, t.shape[1], step):
        out += F.conv2d(t[:, start : start + step].float(), conv.weight[:, start : start + step], None,
                        padding=conv.padding)
    return out


def to_bf16(model: DIM) -> DIM:
    """Cast a DIM to bfloat16 in place for `LeanForward`, leaving untouched (float32, unrounded) what must stay
    precise: the first encoder block (see `precise_first_block`), the 1-channel heads and the preprocessor."""
    keep = [model.backbone.encoder.layer1, model.backbone.decoder.deconv1, model.data_preprocessor]
    if model.refiner is not None:
        keep.append(model.refiner.refine_pred)
    kept = {id(module) for part in keep for module in part.modules()}
    for module in model.modules():
        if id(module) not in kept and next(module.children(), None) is None:
            module.to(torch.bfloat16)
    return model
