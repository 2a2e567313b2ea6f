"""Checkpoints: load mmagic's and our own files without running code, save atomically, map key layouts.

mmagic training checkpoints pickle mmengine objects (`HistoryBuffer`, ...) in `message_hub`, which
`torch.load(weights_only=True)` refuses, and loading them with `weights_only=False` would execute whatever
the pickle asks for. We keep `weights_only=True` and let through only (a) inert stand-in classes for names
under mmengine/mmagic/mmcv (they record their state and run nothing) and (b) the few numpy reconstructors
that rebuild arrays. Any other global (`os.system`, `builtins.eval`, ...) is refused before unpickling starts.
Stand-ins are turned into plain dicts, so a loaded checkpoint holds only tensors and plain Python values.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dimatting.errors import CheckpointError
from dimatting.hub import resolve_checkpoint
from dimatting.io import atomic_path

logger = logging.getLogger("dimatting.checkpoint")

# Modules whose pickled objects are replaced by inert stand-ins (never imported).
FOREIGN_PREFIXES = ("mmengine.", "mmagic.", "mmcv.", "mmedit.")

# torchvision's VGG16 `features.N` conv indices, in order, and our encoder's names for them.
TORCHVISION_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
ENCODER_CONVS = tuple(
    f"layer{block}.{2 * j}" for block, n in enumerate((2, 2, 3, 3, 3), start=1) for j in range(n)
)
ENCODER_PREFIX = "backbone.encoder."


def _numpy_globals() -> dict[str, Any]:
    """The numpy callables a pickled ndarray/scalar/dtype needs, under the names numpy 1.x and 2.x write.

    The callables are taken from numpy's own pickling (`__reduce__`) rather than from a module path:
    numpy 2 keeps them in `numpy._core.multiarray`, numpy 1.x in `numpy.core.multiarray`, and numpy 1.26
    also has a stub `numpy._core` package without that attribute.
    """
    reconstruct = np.empty(0).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    allowed: dict[str, Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{module}._reconstruct"] = reconstruct
        allowed[f"{module}.scalar"] = scalar
    allowed["numpy.ndarray"] = np.ndarray
    allowed["numpy.dtype"] = np.dtype
    return allowed


def _numpy_dtype_classes() -> list[type]:
    """`numpy.dtypes.Float64DType` and friends: what `numpy.dtype(...)` returns, and how numpy 2 names dtypes."""
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    classes = (getattr(dtypes, name) for name in dir(dtypes)) if dtypes is not None else ()
    return [cls for cls in classes if isinstance(cls, type) and issubclass(cls, np.dtype)]


class ForeignObject:
    """Inert stand-in for a pickled object of a class we must not import (e.g. mmengine's HistoryBuffer).

    Unpickling may create it, call it with arguments or hand it a state: all it does is remember them.
    """

    foreign_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> ForeignObject:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Arguments were recorded by `__new__`; nothing else happens."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_plain(self) -> dict[str, Any]:
        """The recorded content as a plain dict (class name, state, constructor arguments)."""
        plain: dict[str, Any] = {"__class__": self.foreign_name}
        if isinstance(self.state, dict):
            plain.update(self.state)
        elif self.state is not None:
            plain["state"] = self.state
        if self.args:
            plain["args"] = list(self.args)
        return plain


def _stand_in(full_name: str) -> type[ForeignObject]:
    module, _, name = full_name.rpartition(".")
    return type(name, (ForeignObject,), {"__module__": module, "__qualname__": name, "foreign_name": full_name})


def _plain(obj: Any) -> Any:
    """Replace stand-ins by dicts, recursively through dicts, lists and tuples."""
    if isinstance(obj, ForeignObject):
        return _plain(obj.to_plain())
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj


def _allowed_globals(path: Path) -> list[tuple[Any, str]]:
    """Decide, before unpickling, what each non-default global of the file may become; refuse the rest."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (RuntimeError, ValueError, zipfile.BadZipFile):
        return []  # legacy (non-zip) file: torch's weights-only unpickler alone decides, and refuses globals
    numpy_globals = _numpy_globals()
    allowed: list[tuple[Any, str]] = []
    for name in names:
        if name.startswith(FOREIGN_PREFIXES):
            allowed.append((_stand_in(name), name))
        elif name in numpy_globals:
            allowed.append((numpy_globals[name], name))
            if name == "numpy.dtype":  # numpy.dtype(...) returns e.g. a Float64DType that then gets its state
                allowed += [(cls, f"numpy.dtypes.{cls.__name__}") for cls in _numpy_dtype_classes()]
        elif name in {f"numpy.dtypes.{cls.__name__}" for cls in _numpy_dtype_classes()}:
            allowed.append((getattr(np.dtypes, name.rpartition(".")[2]), name))
        else:
            raise CheckpointError(
                f"{path}: refused to load: the file references '{name}', which could run code when unpickled; "
                "only load checkpoints from sources you trust, or re-save the weights as .safetensors"
            )
    return allowed


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint (mmagic, ours, a plain state dict or `.safetensors`) on the CPU, running no code.

    `path` may also be a URL or a released model's name (`dimatting.hub`: downloaded once, then cached).
    Always `torch.load(weights_only=True)`. A plain state dict is returned as `{"state_dict": sd}`; mmengine
    objects (message_hub) come back as plain dicts with their class name under `"__class__"`.
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: checkpoint file not found; check the path, or give a URL or a released model name (dim models)"
        )
    if path.suffix == ".safetensors":
        return {"state_dict": _load_safetensors(path)}
    allowed = _allowed_globals(path)
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((lines[i + 1] for i, line in enumerate(lines[:-1]) if "WeightsUnpickler" in line), None)
        first = reason or (lines[0] if lines else type(exc).__name__)
        raise CheckpointError(
            f"{path}: refused to load: the file needs more than tensors and plain values ({first}); "
            "only load checkpoints from sources you trust, or re-save the weights as .safetensors"
        ) from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: cannot read the checkpoint (corrupt, truncated or not a PyTorch file: "
            f"{type(exc).__name__}); download or copy it again"
        ) from exc
    obj = _plain(obj)
    if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        return {"state_dict": dict(obj)}
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict; is it a model file?")
    return dict(obj)


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: cannot read the safetensors file (corrupt or truncated: {exc}); copy it again"
        ) from exc


def extract_state_dict(ckpt: Mapping[str, Any], source: object = "checkpoint") -> dict[str, Tensor]:
    """The model weights of a loaded checkpoint, with DataParallel/DDP's `module.` prefix removed."""
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: 'state_dict' is a {type(state).__name__}, not a dict of tensors")
    tensors = {_strip_module(k): v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(
            f"{source}: no weights found (keys: {', '.join(map(str, list(ckpt)[:6]))}); is it a model checkpoint?"
        )
    return tensors


def _strip_module(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def _first(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" (+{len(names) - n} more)" if len(names) > n else "")


def load_weights(
    model: nn.Module,
    path_or_state_dict: str | os.PathLike | Mapping[str, Tensor],
    strict: bool = False,
    source: object = None,
) -> tuple[list[str], list[str]]:
    """Copy weights into `model`; returns (missing, unexpected) key names.

    Like the reference, loading is non-strict by default (missing keys keep their init, with a warning
    naming them). Weights of another network — no key in common, or tensors of the wrong shape — raise a
    `CheckpointError` naming the file and the first mismatches instead of loading half a model.
    `source` names the weights in messages (default: the path).
    """
    if isinstance(path_or_state_dict, Mapping):
        source = source or "state dict"
        state = extract_state_dict(path_or_state_dict, source)
    else:
        source = source or path_or_state_dict
        state = extract_state_dict(load_checkpoint(path_or_state_dict), source)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if len(unexpected) == len(state):
        raise CheckpointError(
            f"{source}: none of its {len(state)} tensors belongs to this model (e.g. {_first(unexpected)}); "
            "pass a DIM checkpoint"
        )
    if wrong_shape:
        raise CheckpointError(
            f"{source}: {len(wrong_shape)} tensors have the wrong shape for this model: {_first(wrong_shape, 2)}; "
            "pass a checkpoint of the same network"
        )
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{source}: does not match the model: missing {_first(missing) or 'none'}; "
            f"unexpected {_first(unexpected) or 'none'}; pass the checkpoint of this model"
        )
    if missing:
        logger.warning("%s: %d weights missing, left as initialised: %s", source, len(missing), _first(missing))
    if unexpected:
        logger.warning("%s: %d tensors not used by the model: %s", source, len(unexpected), _first(unexpected))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return missing, unexpected


def save_checkpoint(path: str | os.PathLike, obj: Mapping[str, Any]) -> None:
    """torch.save to a temporary file beside `path`, then rename: a crash never leaves half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(dict(obj), tmp)


def save_safetensors(
    path: str | os.PathLike, state_dict: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Weights only, in the safetensors format (no pickle at all: safe to share and to load anywhere)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=dict(metadata) if metadata else None)


def vgg16_to_encoder_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An ImageNet VGG16 state dict -> weights of our 4-channel encoder (keys `layerK.J.*`, encoder-relative).

    torchvision layout (`features.N.*`, 3-channel first conv): renamed, and the first conv gets a 4th
    input channel (the trimap) whose filters are zero, as in the DIM paper, so the network starts as the
    ImageNet VGG16 on the RGB part. mmagic's layout (`layer1.0.weight`, maybe prefixed `backbone.encoder.`)
    is taken as is (a 3-channel first conv is widened the same way). The classifier is dropped; `conv6`
    is kept only if the file has it.
    """
    state = {_strip_module(k): v for k, v in state_dict.items() if isinstance(v, Tensor)}
    if any(k.startswith("features.") for k in state):
        out = {}
        for index, name in zip(TORCHVISION_VGG16_CONVS, ENCODER_CONVS, strict=True):
            for kind in ("weight", "bias"):
                key = f"features.{index}.{kind}"
                if key not in state:
                    raise CheckpointError(f"VGG16 weights: '{key}' is missing; pass torchvision's vgg16 state dict")
                out[f"{name}.{kind}"] = state[key]
    else:
        out = {k[len(ENCODER_PREFIX) :] if k.startswith(ENCODER_PREFIX) else k: v for k, v in state.items()}
        out = {k: v for k, v in out.items() if k.startswith(("layer", "conv6."))}
        if "layer1.0.weight" not in out:
            raise CheckpointError(
                "VGG16 weights: neither torchvision keys (features.0.weight) nor encoder keys (layer1.0.weight) "
                "found; pass an ImageNet VGG16 state dict"
            )
    first = out["layer1.0.weight"]
    if first.ndim != 4 or first.shape[1] not in (3, 4):
        raise CheckpointError(
            f"VGG16 weights: first conv has shape {tuple(first.shape)}, expected (64, 3 or 4, 3, 3)"
        )
    if first.shape[1] == 3:
        out["layer1.0.weight"] = torch.cat([first, first.new_zeros(first.shape[0], 1, *first.shape[2:])], dim=1)
    return out


def load_vgg16_encoder(encoder: nn.Module, path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Start `encoder` (our VGG16) from an ImageNet VGG16 file in either layout; returns (missing, unexpected)."""
    state = extract_state_dict(load_checkpoint(path), path)
    try:
        converted = vgg16_to_encoder_state_dict(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    return load_weights(encoder, {"state_dict": converted}, strict=False, source=path)
