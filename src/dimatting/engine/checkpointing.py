"""Training checkpoints: what goes in them, where they go, which ones are kept, how a run finds them.

Layout (loads in mmagic too, and here with plain `torch.load(weights_only=True)`): `meta` (epoch 0, iter,
cfg text, seed, experiment_name, time, ...), `state_dict` (model, mmagic key names, on the CPU), `optimizer`
(Adam's state dict), and ours: `scaler` (AMP) and `dimatting` (samples seen, best score, log window) —
everything exact resume needs, as tensors and plain Python values only.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from torch import nn

from dimatting import __version__
from dimatting.checkpoint import save_checkpoint
from dimatting.errors import CheckpointError, ConfigError
from dimatting.hub import resolve_checkpoint
from dimatting.io import write_text

logger = logging.getLogger("dimatting")

ITER_RE = re.compile(r"^iter_(\d+)\.pth$")
BEST_RE = re.compile(r"^best_(\w+?)_iter_(\d+)\.pth$")
DATASET_META = {"dataset_type": "matting_dataset", "task_name": "matting"}


def payload(
    model: nn.Module,
    optimizer: Any,
    iteration: int,
    seed: int,
    cfg_text: str,
    experiment_name: str,
    state: dict[str, Any],
    scaler: Any = None,
) -> dict[str, Any]:
    """The checkpoint dict; `state` is the engine's own resume state (plain values)."""
    ckpt: dict[str, Any] = {
        "meta": {
            "epoch": 0,
            "iter": iteration,
            "cfg": cfg_text,
            "seed": seed,
            "experiment_name": experiment_name,
            "time": time.strftime("%Y%m%d_%H%M%S", time.localtime()),
            "dimatting_version": __version__,
            "dataset_meta": dict(DATASET_META),
        },
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "dimatting": state,
    }
    if scaler is not None and scaler.is_enabled():
        ckpt["scaler"] = scaler.state_dict()
    return ckpt


def iter_checkpoints(work_dir: Path) -> list[tuple[int, Path]]:
    """`iter_<N>.pth` files of a work dir, oldest first."""
    if not work_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in work_dir.iterdir() if (m := ITER_RE.match(p.name))]
    return sorted(found)


def best_checkpoints(work_dir: Path, metric: str) -> list[tuple[int, Path]]:
    if not work_dir.is_dir():
        return []
    found = [
        (int(m.group(2)), p) for p in work_dir.iterdir() if (m := BEST_RE.match(p.name)) and m.group(1) == metric
    ]
    return sorted(found)


def save_iteration(work_dir: Path, ckpt: dict[str, Any], max_keep: int) -> Path:
    """Write `iter_<N>.pth`, point `last_checkpoint` at it, and drop the oldest beyond `max_keep` (> 0)."""
    iteration = ckpt["meta"]["iter"]
    logger.info("Saving checkpoint at %d iterations", iteration)
    path = work_dir / f"iter_{iteration}.pth"
    save_checkpoint(path, ckpt)
    write_text(work_dir / "last_checkpoint", str(path))
    if max_keep > 0:
        for _, old in iter_checkpoints(work_dir)[:-max_keep]:
            if old != path:
                old.unlink(missing_ok=True)
    return path


def save_best(work_dir: Path, ckpt: dict[str, Any], metric: str) -> Path:
    """Write `best_<metric>_iter_<N>.pth` and remove the previous best of that metric."""
    iteration = ckpt["meta"]["iter"]
    path = work_dir / f"best_{metric}_iter_{iteration}.pth"
    save_checkpoint(path, ckpt)
    for _, old in best_checkpoints(work_dir, metric):
        if old != path:
            old.unlink(missing_ok=True)
    logger.info("The best checkpoint with %.4f %s at %d iter is saved to %s", ckpt["dimatting"]["best"]["value"],
                metric, iteration, path.name)
    return path


def last_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint `<work_dir>/last_checkpoint` names (or the newest iter_N.pth), None if there is none."""
    pointer = work_dir / "last_checkpoint"
    if pointer.is_file():
        named = Path(pointer.read_text(encoding="utf-8").strip())
        for candidate in (named, work_dir / named.name):
            if candidate.is_file():
                return candidate
        logger.warning("%s names %s, which does not exist; using the newest iter_N.pth", pointer, named)
    found = iter_checkpoints(work_dir)
    return found[-1][1] if found else None


def stage_checkpoint(stem: str, metric: str = "SAD", root: Path = Path("work_dirs")) -> Path:
    """The checkpoint to start a chained stage from: `<root>/<stem>/best_<metric>_iter_*.pth`, else its
    latest checkpoint (with a warning), else a `ConfigError` saying what to run first."""
    stage_dir = root / stem
    best = best_checkpoints(stage_dir, metric)
    if best:
        return best[-1][1]
    latest = last_checkpoint(stage_dir)
    if latest is not None:
        logger.warning("init_from: no best_%s_iter_*.pth in %s; using its latest checkpoint %s", metric, stage_dir,
                       latest)
        return latest
    raise ConfigError(
        f"init_from: no checkpoint of '{stem}' in {stage_dir}; train that stage first "
        f"(python tools/train.py configs/dim/{stem}.py) or pass weights with --cfg-options load_from=PATH"
    )


def resume_path(work_dir: Path, resume: bool | str | None) -> Path | None:
    """`--resume` (True: the work dir's last checkpoint; a path, URL or released name: that file) -> the file to
    resume, or None."""
    if not resume:
        return None
    if isinstance(resume, str):
        path = resolve_checkpoint(resume)
        if not path.is_file():
            raise CheckpointError(f"{path}: --resume checkpoint not found; check the path or use --resume alone")
        return path
    path = last_checkpoint(work_dir)
    if path is None:
        logger.warning("Did not find last_checkpoint to be resumed in %s; training from the start.", work_dir)
    return path


def check_resumable(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    """Our engine state of a checkpoint; a clear error for files that cannot be resumed exactly."""
    state = ckpt.get("dimatting")
    meta = ckpt.get("meta")
    if not isinstance(state, dict) or not isinstance(meta, dict) or "optimizer" not in ckpt:
        raise ConfigError(
            f"{path}: not a dimatting training checkpoint (no optimizer/resume state); "
            "use it as starting weights with --cfg-options load_from=PATH instead of --resume"
        )
    return state
