"""DIM network modules (mmagic module names, so released checkpoints load unchanged)."""

from __future__ import annotations

from dimatting.models.decoder import PlainDecoder
from dimatting.models.dim import DIM, postprocess_alpha
from dimatting.models.encoder_decoder import SimpleEncoderDecoder
from dimatting.models.preprocessor import MattorPreprocessor
from dimatting.models.refiner import PlainRefiner
from dimatting.models.vgg import VGG16

__all__ = [
    "DIM",
    "VGG16",
    "MattorPreprocessor",
    "PlainDecoder",
    "PlainRefiner",
    "SimpleEncoderDecoder",
    "build_dim",
    "postprocess_alpha",
]


def build_dim(with_refiner: bool) -> DIM:
    """The DIM of the seed configs for prediction: stage 1 (no refiner) or stages 2/3 (refiner, refine=True).

    Used when a checkpoint comes without a config; which one follows from the checkpoint's keys.
    """
    backbone = SimpleEncoderDecoder(VGG16(in_channels=4), PlainDecoder(in_channels=512))
    refiner = PlainRefiner() if with_refiner else None
    return DIM(
        data_preprocessor=MattorPreprocessor(),
        backbone=backbone,
        refiner=refiner,
        test_cfg={"refine": with_refiner},
    )
