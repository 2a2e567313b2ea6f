"""Python config files in mmagic's format: `_base_` inheritance, merge rules, `--cfg-options`, dumping.

Configs are trusted local Python files, executed as in the reference, so the seed's own config files load
unchanged. The merge rules are the reference's (facts §1.8): bases are loaded first (recursively) and their
*resolved* values are what the child sees; dicts merge key by key, everything else (lists included) is
replaced; `_delete_=True` replaces a dict outright; a dict over a non-dict is an error; two sibling bases
may not define the same top-level key. `--cfg-options` use the reference's value parsing.

The engine reads only some keys (docs/configs.md, "Keys the engine honours"). `check_keys` lists the others so
they can be reported once as "not used", and turns a near-miss of an honoured key (`train_cfg.max_iter`)
into an error instead of a silently ignored setting.
"""

from __future__ import annotations

import ast
import copy
import difflib
import itertools
import keyword
import math
import os
import re
import traceback
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dimatting.errors import ConfigError
from dimatting.io import write_text

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"

_FILE_VARS = re.compile(r"\{\{\s*(fileDirname|fileBasenameNoExtension|fileBasename|fileExtname)\s*\}\}")
_BASE_REF = re.compile(r"\{\{\s*_base_\.([\w.]+)\s*\}\}")
_MISSING = object()
_DUMP_WIDTH = 100
_MAX_CANDIDATES = 10_000  # files compared when suggesting a config for a mistyped path


class Config(dict):
    """A dict whose keys are also attributes, at every depth: `cfg.model.backbone.encoder.type`.

    Nested dicts (also inside lists and tuples) become `Config` when stored. Dict methods win over keys of
    the same name (`cfg.items` is the method); `cfg["items"]` always reaches the key.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.update(*args, **kwargs)

    @staticmethod
    def fromfile(path: str | os.PathLike) -> Config:
        """Load a `.py` config file with its `_base_` files merged in."""
        return Config(_load_file(Path(path), ()))

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, _wrap(value))

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def copy(self) -> Config:
        return Config(self)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def to_dict(self) -> dict:
        """Plain dicts all the way down (lists and tuples kept), for code that must not see `Config`."""
        return to_plain(self)

    def pretty_text(self) -> str:
        """Python text that `Config.fromfile` loads back to an equal config."""
        return pretty_text(self)

    def dump(self, path: str | os.PathLike) -> None:
        """Write `pretty_text()` to `path` atomically."""
        dump(self, path)


def _wrap(value: Any) -> Any:
    if isinstance(value, Config):
        return value
    if isinstance(value, Mapping):
        return Config(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def to_plain(value: Any) -> Any:
    """`value` with every mapping turned into a plain dict (lists and tuples kept as such)."""
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    return value


# --------------------------------------------------------------------------------------------- loading


def _load_file(path: Path, chain: tuple[Path, ...]) -> dict:
    """The merged top-level dict of one config file; `chain` holds the files that inherit from it."""
    path = Path(os.path.abspath(os.path.expanduser(path)))
    where = f" (a _base_ of {chain[-1]})" if chain else ""
    if path in chain:
        raise ConfigError(f"{path}: circular _base_ inheritance ({' -> '.join(str(p) for p in chain)}); remove one")
    if not path.is_file():
        raise config_not_found(path, where)
    if path.suffix != ".py":
        raise ConfigError(f"{path}: only Python (.py) config files are supported; rewrite it as a .py file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    text = _substitute(text, path)
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: syntax error: {exc.msg}; fix the Python syntax") from None

    base: dict = {}
    for base_path in _base_files(tree, path):
        loaded = _load_file(base_path, (*chain, path))
        duplicates = sorted(base.keys() & loaded.keys())
        if duplicates:
            raise ConfigError(
                f"{path}: key(s) {', '.join(duplicates)} defined again in _base_ file {base_path}; "
                "sibling bases may not share a top-level key, keep it in one of them"
            )
        base.update(loaded)

    # The `_base_` assignment is dropped so that `_base_` names the merged base config while the file runs.
    tree.body = [node for node in tree.body if not _assigns_base(node)]
    namespace: dict[str, Any] = {BASE_KEY: Config(copy.deepcopy(base))}
    try:
        exec(compile(tree, str(path), "exec"), namespace)
    except Exception as exc:
        raise ConfigError(f"{_error_location(exc, path)}: {type(exc).__name__}: {exc}; fix the config") from exc

    child = {
        key: value
        for key, value in namespace.items()
        if key != BASE_KEY and not key.startswith("__") and not _is_helper(value)
    }
    return _merge(copy.deepcopy(child), base, allow_list_keys=False, source=str(path))


def config_not_found(path: Path, where: str = "") -> ConfigError:
    """The error for a missing config file, suggesting the existing config its path is closest to."""
    close = closest_config(path)
    hint = f"did you mean {close}?" if close else "check the path (the seed's configs are in configs/dim/)"
    return ConfigError(f"{path}: config file not found{where}; {hint}")


def closest_config(path: str | os.PathLike) -> Path | None:
    """The existing `.py` file whose path is closest to `path` (a typo), or None.

    Candidates are the `.py` files as deep below the nearest existing folder above `path` as `path` is, so
    `onfigs/dim/x.py` finds `configs/dim/x.py`. The file system root is never scanned.
    """
    path = Path(path)
    base, depth = path.parent, 1
    while not base.is_dir():
        base, depth = base.parent, depth + 1
    if base.is_absolute() and base == base.parent:
        return None
    pattern = "/".join(["*"] * (depth - 1) + ["*.py"])
    candidates = [str(p) for p in itertools.islice(base.glob(pattern), _MAX_CANDIDATES)]
    close = difflib.get_close_matches(str(path), candidates, n=1, cutoff=0.7)
    return Path(close[0]) if close else None


def _substitute(text: str, path: Path) -> str:
    """Replace `{{fileDirname}}`-style variables and turn `{{_base_.x}}` into the expression `_base_.x`."""
    values = {
        "fileDirname": str(path.parent),
        "fileBasename": path.name,
        "fileBasenameNoExtension": path.stem,
        "fileExtname": path.suffix,
    }
    text = _FILE_VARS.sub(lambda m: values[m.group(1)].replace("\\", "/"), text)
    return _BASE_REF.sub(lambda m: f"{BASE_KEY}.{m.group(1)}", text)


def _assigns_base(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == BASE_KEY for t in node.targets)


def _base_files(tree: ast.Module, path: Path) -> list[Path]:
    """The files named by `_base_` (a string or a list of strings), relative to `path`'s folder."""
    nodes = [node for node in tree.body if _assigns_base(node)]
    if not nodes:
        return []
    try:
        value = ast.literal_eval(nodes[-1].value)
    except (ValueError, TypeError, SyntaxError):
        value = None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{path}:{nodes[-1].lineno}: _base_ must be a file name or a list of file names")
    for name in names:
        if "::" in name:
            raise ConfigError(f"{path}: _base_ '{name}' names a package config; use a relative file path")
    return [path.parent / name for name in names]


def _is_helper(value: Any) -> bool:
    """Imported modules, functions and classes help write a config; they are not config values."""
    return isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type))


def _error_location(exc: BaseException, path: Path) -> str:
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    return f"{path}:{lines[-1]}" if lines else str(path)


# ---------------------------------------------------------------------------------------------- merging


def _merge(child: Mapping, base: Any, allow_list_keys: bool, source: str, where: str = "") -> Any:
    """`base` updated by `child` by the reference's rules; neither input is modified.

    `allow_list_keys` (only for `--cfg-options`) lets numeric keys index into a list.
    """
    if isinstance(base, list):
        result_list = list(base)
        for key, value in child.items():
            here = f"{where}.{key}"
            if not (isinstance(key, str) and key.isdigit()):
                raise ConfigError(f"{source}: {where} is a list; index it with a number, not '{key}'")
            index = int(key)
            if index >= len(result_list):
                raise ConfigError(f"{source}: {here}: index out of range, {where} has {len(result_list)} items")
            result_list[index] = _merge_value(value, result_list[index], allow_list_keys, source, here)
        return result_list
    result = dict(base)
    for key, value in child.items():
        here = f"{where}.{key}" if where else str(key)
        result[key] = _merge_value(value, result.get(key, _MISSING), allow_list_keys, source, here)
    return result


def _merge_value(value: Any, old: Any, allow_list_keys: bool, source: str, here: str) -> Any:
    if not isinstance(value, Mapping):
        return _drop_delete(value)
    value = dict(value)
    replace = value.pop(DELETE_KEY, False)
    if old is _MISSING or replace:
        return _drop_delete(value)
    if isinstance(old, Mapping) or (allow_list_keys and isinstance(old, list)):
        return _merge(value, old, allow_list_keys, source, here)
    raise ConfigError(
        f"{source}: {here}: a dict cannot be merged into the inherited value {old!r}; "
        f"add {DELETE_KEY}=True to the dict to replace it"
    )


def _drop_delete(value: Any) -> Any:
    """`_delete_` only means something against an inherited dict; elsewhere it is dropped."""
    if isinstance(value, Mapping):
        return {k: _drop_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [_drop_delete(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_drop_delete(v) for v in value)
    return value


# ----------------------------------------------------------------------------------------- cfg-options


def parse_value(text: str) -> Any:
    """One `--cfg-options` value, parsed as the reference does.

    Surrounding quotes and all spaces are removed; `[a,b]` and `a,b` give lists, `(a,b)` a tuple (nesting
    allowed); a scalar is tried as int, then float, then true/false (any case), then `None` (exact), else
    it stays a string.
    """
    text = text.strip("'\"").replace(" ", "")
    depth = 0
    for char in text:
        depth += (char in "([") - (char in ")]")
        if depth < 0:
            break
    if depth != 0:
        raise ConfigError(f"--cfg-options value '{text}': unbalanced brackets; close every ( and [")
    if len(text) >= 2 and (text[0], text[-1]) in (("(", ")"), ("[", "]")) and _encloses(text):
        items = [parse_value(item) for item in _split_top(text[1:-1])]
        return tuple(items) if text[0] == "(" else items
    if "," in text:
        return [parse_value(item) for item in _split_top(text)]
    return _parse_scalar(text)


def _encloses(text: str) -> bool:
    """True when the opening bracket at 0 is closed only by the last character (`[1],[2]` is two items)."""
    depth = 0
    for i, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if depth == 0 and i < len(text) - 1:
            return False
    return True


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets; a trailing comma adds no item."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if start < len(text):
        items.append(text[start:])
    return items


def _parse_scalar(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text == "None":
        return None
    return text


def parse_options(options: Iterable[str]) -> dict[str, Any]:
    """`["a.b=1", "c=[1,2]"]` -> `{"a.b": 1, "c": [1, 2]}`; a later repeat of a key wins."""
    parsed: dict[str, Any] = {}
    for item in options:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(part == "" for part in key.split(".")):
            raise ConfigError(f"--cfg-options '{item}': expected KEY=VALUE, e.g. train_cfg.max_iters=1000")
        parsed[key] = parse_value(raw)
    return parsed


def merge_options(cfg: Config, options: Iterable[str] | Mapping[str, Any]) -> Config:
    """Apply `--cfg-options` to `cfg` in place (and return it).

    Dotted keys build nested dicts that merge into the config; a numeric part indexes a list
    (`train_dataloader.dataset.pipeline.4.crop_sizes=[320]`). Strings are parsed with `parse_value`;
    a mapping of already-parsed values is used as is.
    """
    parsed = dict(options) if isinstance(options, Mapping) else parse_options(options)
    tree: dict[str, Any] = {}
    for full_key, value in parsed.items():
        node = tree
        parts = full_key.split(".")
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"--cfg-options: '{prefix}' is set to a value and also used as '{full_key}'")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"--cfg-options: '{full_key}' is set to a value and also used as a prefix")
        node[parts[-1]] = value
    merged = _merge(tree, cfg, allow_list_keys=True, source="--cfg-options")
    cfg.clear()
    cfg.update(merged)
    return cfg


# ------------------------------------------------------------------------------------------------ dump


def pretty_text(cfg: Mapping) -> str:
    """The config as `key = value` lines of Python that load back to an equal config."""
    lines = []
    for key, value in cfg.items():
        if not _is_name(key) or key.startswith("__") or key in (BASE_KEY, "dict", "float"):
            raise ConfigError(f"config key {key!r} cannot be written as a Python name in a config file; rename it")
        lines.append(f"{key} = {_format(value, 0, len(key) + 3, key)}")
    return "\n".join(lines) + "\n"


def dump(cfg: Mapping, path: str | os.PathLike) -> None:
    """Write the resolved config to `path` (atomically) as a loadable `.py` file."""
    write_text(path, pretty_text(cfg))


def _is_name(key: Any) -> bool:
    return isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)


def _format(value: Any, indent: int, lead: int, where: str) -> str:
    """Inline when it fits in the line (`lead` characters precede it), else one item per line."""
    inline = _inline(value, where)
    if lead + len(inline) < _DUMP_WIDTH or not isinstance(value, (Mapping, list, tuple)) or not value:
        return inline
    pad = " " * (indent + 4)
    if isinstance(value, Mapping):
        as_call = all(_is_name(k) for k in value)
        items = [
            f"{pad}{k}={_format(v, indent + 4, indent + 5 + len(k), f'{where}.{k}')}"
            if as_call
            else f"{pad}{k!r}: {_format(v, indent + 4, indent + 6 + len(repr(k)), f'{where}.{k}')}"
            for k, v in value.items()
        ]
        opening, closing = ("dict(", ")") if as_call else ("{", "}")
    else:
        items = [f"{pad}{_format(v, indent + 4, indent + 4, f'{where}.{i}')}" for i, v in enumerate(value)]
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
    return opening + "\n" + ",\n".join(items) + ",\n" + " " * indent + closing


def _inline(value: Any, where: str) -> str:
    if isinstance(value, Mapping):
        if all(_is_name(k) for k in value):
            return "dict(" + ", ".join(f"{k}={_inline(v, f'{where}.{k}')}" for k, v in value.items()) + ")"
        return "{" + ", ".join(f"{k!r}: {_inline(v, f'{where}.{k}')}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v, f"{where}.{i}") for i, v in enumerate(value)) + "]"
    if isinstance(value, tuple):
        items = [_inline(v, f"{where}.{i}") for i, v in enumerate(value)]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, float) and not math.isfinite(value):
        return f"float('{value}')"
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    raise ConfigError(f"config value {where} = {value!r} cannot be written to a config file; use plain data")


# ------------------------------------------------------------------------------------------ key checks

# docs/configs.md, "Keys the engine honours"; `*` = the whole subtree.
HONOURED_KEYS: tuple[str, ...] = (
    "model.*",
    "train_cfg.max_iters",
    "train_cfg.val_interval",
    "optim_wrapper.optimizer.*",
    "default_hooks.checkpoint.interval",
    "default_hooks.checkpoint.max_keep_ckpts",
    "default_hooks.checkpoint.save_best",
    "default_hooks.checkpoint.rule",
    "default_hooks.logger.interval",
    "randomness.seed",
    "randomness.deterministic",
    "load_from",
    "resume",
    "work_dir",
    "init_from",
    *(
        f"{split}_dataloader.{key}"
        for split in ("train", "val", "test")
        for key in ("batch_size", "num_workers", "dataset.*", "sampler.*")
    ),
    "val_evaluator.*",
    "test_evaluator.*",
    "env_cfg.dist_cfg.*",
    "env_cfg.cudnn_benchmark",
    "env_cfg.mp_cfg.*",
    "experiment_name",
)


def _under(prefix: str, names: str) -> tuple[str, ...]:
    """Dotted keys for the space-separated `names` under `prefix` (top-level keys when it is empty)."""
    return tuple(f"{prefix}.{name}" if prefix else name for name in names.split())


# Keys the reference (mmengine's Runner, hooks, loops, dataloaders) knows. They may be unused here, but
# they are never typos, however close they are to an honoured key (`val_cfg` vs `train_cfg`).
REFERENCE_KEYS: tuple[str, ...] = (
    *_under(
        "",
        """model work_dir train_dataloader val_dataloader test_dataloader train_cfg val_cfg test_cfg optim_wrapper
        param_scheduler val_evaluator test_evaluator default_hooks custom_hooks load_from resume launcher env_cfg
        log_processor log_level visualizer default_scope randomness experiment_name auto_scale_lr data_preprocessor
        train_pipeline test_pipeline val_pipeline save_dir dataset_type data_root vis_backends""",
    ),
    *_under("train_cfg", "type by_epoch max_epochs max_iters val_begin val_interval dynamic_intervals"),
    *_under("optim_wrapper", "type constructor optimizer paramwise_cfg clip_grad accumulative_counts loss_scale dtype"),
    *_under("default_hooks", "timer logger param_scheduler checkpoint sampler_seed visualization runtime_info"),
    *_under(
        "default_hooks.checkpoint",
        """type interval by_epoch save_optimizer save_param_scheduler out_dir max_keep_ckpts save_last save_best
        rule greater_keys less_keys file_client_args filename_tmpl backend_args published_keys save_begin""",
    ),
    *_under(
        "default_hooks.logger",
        """type interval ignore_last interval_exp_name out_dir out_suffix keep_local file_client_args
        log_metric_by_epoch backend_args""",
    ),
    *_under("randomness", "seed deterministic diff_rank_seed"),
    *_under("env_cfg", "cudnn_benchmark mp_cfg dist_cfg"),
    *(
        key
        for split in ("train", "val", "test")
        for key in _under(
            f"{split}_dataloader",
            """batch_size num_workers persistent_workers drop_last sampler batch_sampler dataset collate_fn
            pin_memory prefetch_factor worker_init_fn""",
        )
    ),
)


def _key_tree(keys: Iterable[str]) -> dict:
    """Dotted keys as nested dicts; `*` marks a subtree taken whole (value None)."""
    tree: dict = {}
    for key in keys:
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if parts[-1] == "*":
            parent = tree
            for part in parts[:-2]:
                parent = parent[part]
            parent[parts[-2]] = None
        else:
            node.setdefault(parts[-1], {})
    return tree


_HONOURED_TREE = _key_tree(HONOURED_KEYS)
_REFERENCE_TREE = _key_tree(REFERENCE_KEYS)


def check_keys(cfg: Mapping) -> list[str]:
    """The dotted keys of `cfg` that the engine does not use (shallowest first, in config order).

    Raises `ConfigError` when an unused key is a near-miss of an honoured one (a typo such as
    `train_cfg.max_iter`) and is not a key the reference itself knows. Then checks the typed dicts the
    engine builds (`model`, datasets with their pipelines, evaluators) against what their classes accept,
    so a typo there (`model.backbone.encoderr`) fails at start-up instead of at the first validation.
    """
    unused: list[str] = []
    _collect_unused(cfg, _HONOURED_TREE, _REFERENCE_TREE, "", unused)
    from dimatting import registry  # the registry imports model code lazily; keep `config` light

    if isinstance(cfg.get("model"), Mapping):
        registry.check_args(cfg["model"], "model")
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if isinstance(loader, Mapping) and isinstance(loader.get("dataset"), Mapping):
            registry.check_args(loader["dataset"], f"{split}_dataloader.dataset")
    for name in ("val_evaluator", "test_evaluator"):
        if cfg.get(name) is not None:
            registry.metric_keys(cfg[name], name)
    return unused


def _collect_unused(value: Mapping, honoured: dict, known: dict | None, prefix: str, out: list[str]) -> None:
    for key, sub in value.items():
        here = f"{prefix}.{key}" if prefix else str(key)
        if key in honoured:
            if honoured[key] is not None and isinstance(sub, Mapping):
                _collect_unused(sub, honoured[key], (known or {}).get(key), here, out)
            continue
        if known is None or key not in known:
            close = difflib.get_close_matches(str(key).lower(), list(honoured), n=1, cutoff=0.8)
            if close:
                suggestion = f"{prefix}.{close[0]}" if prefix else close[0]
                raise ConfigError(f"config key '{here}' is not used; did you mean '{suggestion}'?")
        out.append(here)
