"""From config dicts to objects: one explicit table of the reference's `type=` names, and one builder.

The table maps each mmagic type name to a `"module:attribute"` string that is imported only when the type
is first built, so importing the registry costs nothing (no torch) and a type's module is loaded only by
those who use it. There is no decorator registration: this file is the whole list of what configs can build.

`build` checks a dict's keys against the class's signature before calling it, so a typo in a config
(`encoderr=`) is reported with the key's config path and the closest accepted name, not as a TypeError.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from dimatting.errors import ConfigError

REGISTRY: dict[str, str] = {
    # model
    "DIM": "dimatting.models.dim:DIM",
    "MattorPreprocessor": "dimatting.models.preprocessor:MattorPreprocessor",
    "SimpleEncoderDecoder": "dimatting.models.encoder_decoder:SimpleEncoderDecoder",
    "VGG16": "dimatting.models.vgg:VGG16",
    "PlainDecoder": "dimatting.models.decoder:PlainDecoder",
    "PlainRefiner": "dimatting.models.refiner:PlainRefiner",
    # losses
    "CharbonnierLoss": "dimatting.losses:CharbonnierLoss",
    "CharbonnierCompLoss": "dimatting.losses:CharbonnierCompLoss",
    # data
    "AdobeComp1kDataset": "dimatting.data.comp1k:AdobeComp1kDataset",
    "LoadImageFromFile": "dimatting.data.transforms:LoadImageFromFile",
    "CropAroundUnknown": "dimatting.data.transforms:CropAroundUnknown",
    "Flip": "dimatting.data.transforms:Flip",
    "Resize": "dimatting.data.transforms:Resize",
    "GenerateTrimap": "dimatting.data.transforms:GenerateTrimap",
    "MergeFgAndBg": "dimatting.data.transforms:MergeFgAndBg",
    "RescaleToZeroOne": "dimatting.data.transforms:RescaleToZeroOne",
    "PackInputs": "dimatting.data.transforms:PackInputs",
}

# The reference's metric types (val/test_evaluator entries) -> our metric keys (dimatting.metrics).
METRICS: dict[str, str] = {"SAD": "SAD", "MattingMSE": "MSE", "GradientError": "GRAD", "ConnectivityError": "CONN"}

# Our metrics implement the reference's default parameters only; setting them to those values is fine.
# MattingMSE's norm_const is accepted at any value because the reference ignores it too (facts §6.3).
_METRIC_ARGS: dict[str, dict[str, Any]] = {
    "SAD": {"norm_const": 1000},
    "MattingMSE": {"norm_const": None},
    "GradientError": {"sigma": 1.4, "norm_constant": 1000},
    "ConnectivityError": {"step": 0.1, "norm_constant": 1000},
}

# Arguments passed on as plain dicts, never built: they configure the object rather than being objects.
PLAIN_DICT_ARGS = ("init_cfg", "train_cfg", "test_cfg")

# Keys read from the plain-dict arguments; anything else there would be silently ignored, so it is an error.
_PLAIN_DICT_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("DIM", "train_cfg"): ("train_backbone", "train_refiner"),
    ("DIM", "test_cfg"): ("refine", "resize_method", "resize_mode", "size_divisor"),
}


def resolve(type_name: Any, where: str = "config") -> Any:
    """The class (or function) registered under `type_name`, imported on first use."""
    if not isinstance(type_name, str):
        raise ConfigError(f"{where}.type must be a type name (a string), got {type_name!r}")
    target = REGISTRY.get(type_name)
    if target is None:
        close = difflib.get_close_matches(type_name, list(REGISTRY), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else f"known: {', '.join(REGISTRY)}"
        raise ConfigError(f"{where}: unknown type '{type_name}'; {hint}")
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _typed(value: Any) -> bool:
    return isinstance(value, Mapping) and "type" in value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def check_args(cfg: Mapping, where: str = "config") -> None:
    """Check a typed dict and every typed dict inside it against what their classes accept, building nothing."""
    _check_one(cfg, where)
    for key, value in cfg.items():
        here = f"{where}.{key}"
        if key == "type" or key in PLAIN_DICT_ARGS:
            continue
        if key == "pipeline":
            for i, step in enumerate(_pipeline(value, here)):
                check_args(step, f"{here}.{i}")
        elif _typed(value):
            check_args(value, here)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if _typed(item):
                    check_args(item, f"{here}.{i}")


def _check_one(cfg: Mapping, where: str) -> Any:
    """Resolve the dict's type and check its own keys (not those of nested dicts); returns the class."""
    if not _typed(cfg):
        raise ConfigError(f"{where}: expected a dict with a 'type' key, got {cfg!r}")
    cls = resolve(cfg["type"], where)
    kwargs = {k: v for k, v in cfg.items() if k != "type"}
    _check_signature(cls, cfg["type"], kwargs, where)
    for key in PLAIN_DICT_ARGS:
        if key in kwargs:
            _check_plain_dict(cfg["type"], key, kwargs[key], f"{where}.{key}")
    return cls


def _check_signature(cls: Any, type_name: str, kwargs: Mapping, where: str) -> None:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # builtins without a signature: let the call itself decide
        return
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in kwargs:
            if key not in accepted:
                close = difflib.get_close_matches(str(key), accepted, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"{type_name} accepts: {', '.join(accepted)}"
                raise ConfigError(f"{where}: unknown key '{key}' for {type_name}; {hint}")
    for name, p in params.items():
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in kwargs:
            raise ConfigError(f"{where}: {type_name} needs '{name}'; add {where}.{name}")


def _check_plain_dict(type_name: str, key: str, value: Any, where: str) -> None:
    allowed = _PLAIN_DICT_KEYS.get((type_name, key))
    if value is None or allowed is None:
        return
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a dict, got {value!r}")
    for name in value:
        if name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(allowed)}"
            raise ConfigError(f"{where}: unknown key '{name}'; {hint}")


def _pipeline(value: Any, where: str) -> list:
    """The typed steps of a pipeline; steps that are already objects are left to the dataset."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of transform dicts, got {value!r}")
    for i, step in enumerate(value):
        if isinstance(step, Mapping) and not _typed(step):
            raise ConfigError(f"{where}.{i}: a transform dict needs a 'type' key, got {step!r}")
    return [step for step in value if _typed(step)]


def build(cfg: Mapping, where: str = "config") -> Any:
    """Build the object a typed dict describes, building nested typed dicts (and lists of them) first.

    `init_cfg`, `train_cfg` and `test_cfg` are passed as plain dicts; `pipeline` becomes a list of transform
    objects; other mappings without `type` are passed as plain dicts. `where` (the dict's config path) is
    used in error messages.
    """
    cls = _check_one(cfg, where)
    type_name = cfg["type"]
    kwargs: dict[str, Any] = {}
    for key, value in cfg.items():
        here = f"{where}.{key}"
        if key == "type":
            continue
        if key in PLAIN_DICT_ARGS:
            kwargs[key] = _plain(value)
        elif type_name == "SimpleEncoderDecoder" and key == "decoder":
            continue  # built below, once the encoder is known
        elif key == "pipeline":
            _pipeline(value, here)
            kwargs[key] = _build_value(value, here)
        else:
            kwargs[key] = _build_value(value, here)
    if type_name == "SimpleEncoderDecoder" and "decoder" in cfg:
        kwargs["decoder"] = build(_decoder_cfg(cfg["decoder"], kwargs.get("encoder")), f"{where}.decoder")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise ConfigError(f"{where} ({type_name}): {exc}") from exc


def _build_value(value: Any, where: str) -> Any:
    if _typed(value):
        return build(value, where)
    if isinstance(value, (list, tuple)):
        items = [_build_value(v, f"{where}.{i}") for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    return _plain(value)


def _decoder_cfg(decoder: Mapping, encoder: Any) -> Mapping:
    """As in the reference, a decoder without `in_channels` takes the encoder's `out_channels`."""
    out_channels = getattr(encoder, "out_channels", None)
    if out_channels is None or "in_channels" in decoder:
        return decoder
    return {**decoder, "in_channels": out_channels}


def build_model(model_cfg: Mapping) -> Any:
    """The model described by a config's `model` dict (DIM with its preprocessor, backbone, refiner, losses)."""
    return build(model_cfg, "model")


def build_dataset(dataset_cfg: Mapping, where: str = "dataset") -> Any:
    """A dataset from e.g. `cfg.train_dataloader.dataset`, its pipeline built into transform objects."""
    return build(dataset_cfg, where)


def metric_keys(evaluator_cfg: Any, where: str = "val_evaluator") -> list[str]:
    """Our metric keys (SAD/MSE/GRAD/CONN), in config order, for a `val/test_evaluator` entry.

    Accepts a list of metric dicts or a single one. Parameters other than the reference's defaults are
    refused: the metrics implement those defaults only.
    """
    entries = list(evaluator_cfg) if isinstance(evaluator_cfg, (list, tuple)) else [evaluator_cfg]
    keys = []
    for i, entry in enumerate(entries):
        here = f"{where}.{i}" if isinstance(evaluator_cfg, (list, tuple)) else where
        if not _typed(entry):
            raise ConfigError(f"{here}: expected a metric dict such as dict(type='SAD'), got {entry!r}")
        name = entry["type"]
        if name not in METRICS:
            close = difflib.get_close_matches(str(name), list(METRICS), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(METRICS)}"
            raise ConfigError(f"{here}: unknown metric '{name}'; {hint}")
        defaults = _METRIC_ARGS[name]
        for arg, value in entry.items():
            if arg == "type":
                continue
            if arg not in defaults:
                raise ConfigError(f"{here}: {name} has no parameter '{arg}'; it accepts: {', '.join(defaults)}")
            if defaults[arg] is not None and value != defaults[arg]:
                raise ConfigError(
                    f"{here}: {name}.{arg}={value!r} is not supported (only the reference's {defaults[arg]!r}); "
                    f"remove it"
                )
        keys.append(METRICS[name])
    return keys
