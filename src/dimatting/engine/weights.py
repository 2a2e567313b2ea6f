"""Where a training run's starting weights come from: resume > load_from > init_from > pretrained VGG16.

The reference always initialises (downloading ImageNet VGG16 for the encoder) and then loads `load_from`.
Here the download is a local file, so it is only required when nothing else supplies the weights: a
chained stage 2/3 run does not need the VGG16 file it would overwrite anyway.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from torch import nn

from dimatting.checkpoint import load_checkpoint, load_vgg16_encoder, load_weights
from dimatting.engine.checkpointing import stage_checkpoint
from dimatting.errors import CheckpointError, ConfigError

logger = logging.getLogger("dimatting")

PRETRAINED_ENV = "DIMATTING_PRETRAINED"
DEFAULT_PRETRAINED = Path("~/.cache/dimatting/vgg16.pth")
FROM_SCRATCH = "--cfg-options model.backbone.encoder.init_cfg=None"


def pretrained_vgg16_path(init_cfg: dict) -> Path:
    """The local VGG16 file for a `Pretrained` init_cfg: $DIMATTING_PRETRAINED, a local `checkpoint`, or the
    cache path; a `ConfigError` naming where to put it (or how to train from scratch) if there is none."""
    env = os.environ.get(PRETRAINED_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: ${PRETRAINED_ENV} names a missing file; fix it or unset it")
        return path
    named = Path(str(init_cfg.get("checkpoint", ""))).expanduser()
    if named.suffix and named.is_file():
        return named
    cached = DEFAULT_PRETRAINED.expanduser()
    if cached.is_file():
        return cached
    raise ConfigError(
        f"{cached}: ImageNet VGG16 weights for the encoder not found (nothing is downloaded); put torchvision's "
        f"vgg16 state dict there or set ${PRETRAINED_ENV}=FILE, or train from scratch with {FROM_SCRATCH}"
    )


def init_pretrained_encoder(model: nn.Module) -> None:
    """Load ImageNet VGG16 into the encoder when its init_cfg says `Pretrained`."""
    encoder = model.backbone.encoder
    init_cfg = getattr(encoder, "init_cfg", None)
    if not init_cfg or init_cfg.get("type") != "Pretrained":
        return
    path = pretrained_vgg16_path(init_cfg)
    logger.info("Load pretrained encoder weights from %s", path)
    load_vgg16_encoder(encoder, path)


def apply_model_init_cfg(model: nn.Module) -> None:
    """Honour a model-level `init_cfg=dict(type='Kaiming', ...)` (mmengine's KaimingInit and its defaults:
    mode='fan_out', nonlinearity='relu', normal distribution, bias 0) on every Conv2d, after the modules'
    own initialisation.

    Why: the reference's Xavier init (what `encoder.init_cfg=None` gives) shrinks the signal about 1.4x per
    ReLU layer; through DIM's 20 conv layers the from-scratch output varies by ~1e-5 and the network starts
    as a constant, learning nothing for hundreds of iterations. With Kaiming it varies by ~0.04. The seed
    configs start from ImageNet VGG16 and do not set it; the quickstart (from scratch) does.
    """
    init_cfg = getattr(model, "init_cfg", None)
    if not init_cfg:
        return
    kind = init_cfg.get("type")
    layers = init_cfg.get("layer", "Conv2d")
    if kind != "Kaiming" or layers not in ("Conv2d", ["Conv2d"]):
        raise ConfigError(
            f"model.init_cfg={dict(init_cfg)!r}: only dict(type='Kaiming', layer='Conv2d') is supported here; "
            "remove it for the reference's initialisation"
        )
    distribution = init_cfg.get("distribution", "normal")
    kaiming = nn.init.kaiming_normal_ if distribution == "normal" else nn.init.kaiming_uniform_
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            kaiming(module.weight, a=init_cfg.get("a", 0), mode=init_cfg.get("mode", "fan_out"),
                    nonlinearity=init_cfg.get("nonlinearity", "relu"))
            if module.bias is not None:
                nn.init.constant_(module.bias, init_cfg.get("bias", 0))
    logger.info("Initialised every Conv2d with %s", dict(init_cfg))


def starting_checkpoint(cfg: dict) -> Path | None:
    """`load_from` if set (must exist), else the chained stage's checkpoint (`init_from`), else None."""
    load_from = cfg.get("load_from")
    if load_from:
        path = Path(str(load_from)).expanduser()
        if not path.is_file():
            raise CheckpointError(f"{path}: load_from checkpoint not found; check the path")
        return path
    init_from = cfg.get("init_from")
    if init_from:
        return stage_checkpoint(str(init_from))
    return None


def load_start_weights(model: nn.Module, path: Path) -> None:
    """Load a previous stage's (or any DIM) checkpoint non-strictly; the backbone must be in it.

    A refiner missing from a stage-1 checkpoint is expected (it starts fresh); a checkpoint without the
    encoder-decoder is the wrong file for any stage.
    """
    logger.info("Load checkpoint from %s", path)
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict", ckpt)
    if not any(str(k).removeprefix("module.").startswith("backbone.") for k in state):
        raise CheckpointError(
            f"{path}: has no encoder-decoder weights (backbone.*); load_from needs a DIM checkpoint of an earlier stage"
        )
    missing, unexpected = load_weights(model, ckpt, strict=False, source=path)
    if missing:
        logger.info("Missing keys (left as initialised): %s", ", ".join(missing))
    if unexpected:
        logger.info("Unexpected keys (ignored): %s", ", ".join(unexpected))
