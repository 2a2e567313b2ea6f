"""Where a training run's starting weights come from: resume > load_from > init_from > pretrained VGG16.

The reference always initialises (downloading ImageNet VGG16 for the encoder) and then loads `load_from`.
Here the VGG16 file is only looked up (and downloaded if needed) when nothing else supplies the weights: a
chained stage 2/3 run does not need the VGG16 file it would overwrite anyway.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlparse

from torch import nn

from dimatting.checkpoint import load_checkpoint, load_vgg16_encoder, load_weights
from dimatting.engine.checkpointing import stage_checkpoint
from dimatting.errors import CheckpointError, ConfigError
from dimatting.hub import SCHEMES, download, resolve_checkpoint

logger = logging.getLogger("dimatting")

PRETRAINED_ENV = "DIMATTING_PRETRAINED"
DEFAULT_PRETRAINED = Path("~/.cache/dimatting/vgg16.pth")
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"  # torchvision's ImageNet VGG16
FROM_SCRATCH = "--cfg-options model.backbone.encoder.init_cfg=None"
VGG16_HINT = f"or set ${PRETRAINED_ENV}=FILE, or train from scratch with {FROM_SCRATCH}"


def pretrained_vgg16_path(init_cfg: dict) -> Path:
    """The local VGG16 file for a `Pretrained` init_cfg, first found of: $DIMATTING_PRETRAINED (a file or a
    URL), the init_cfg's `checkpoint` when it is a local file or an http(s)/file URL, ~/.cache/dimatting/vgg16.pth,
    torchvision's ImageNet VGG16 (`VGG16_URL`) from torch.hub's cache, downloaded there if it is not cached.

    The first two and the cached copies work offline. The reference's `open-mmlab://mmedit/vgg16` is not
    fetched: torchvision's file is the ImageNet VGG16 this project starts from (see docs/training.md).
    """
    env = os.environ.get(PRETRAINED_ENV)
    if env:
        path = resolve_checkpoint(env)
        if not path.is_file():
            raise ConfigError(f"{path}: ${PRETRAINED_ENV} names a missing file; fix it or unset it")
        return path
    named = str(init_cfg.get("checkpoint", ""))
    if urlparse(named).scheme.lower() in SCHEMES:
        return download(named, hint=VGG16_HINT)
    local = Path(named).expanduser()
    if local.suffix and local.is_file():
        return local
    cached = DEFAULT_PRETRAINED.expanduser()
    if cached.is_file():
        return cached
    return download(VGG16_URL, hint=VGG16_HINT)


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
    """`load_from` if set (a file, URL or released name; must exist), else the chained stage's checkpoint
    (`init_from`), else None."""
    load_from = cfg.get("load_from")
    if load_from:
        path = resolve_checkpoint(str(load_from))
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
