"""Training checkpoints: what goes in them, where they go, which ones are kept, how a run finds them.

Layout (loads in mmagic too, and here with plain `torch.load(weights_only=True)`): `meta` (epoch 0, iter,
cfg text, seed, experiment_name, time, ...), `state_dict` (model, mmagic key names, on the CPU), `optimizer`
(Adam's state dict), and ours: `scaler` (AMP) and `dimatting` (the run's `TrainState`) — everything exact
resume needs, as tensors and plain Python values only.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

from torch import nn

from dimatting import __version__
from dimatting.checkpoint import load_checkpoint, save_checkpoint
from dimatting.engine.state import SECTION, TrainState
from dimatting.errors import CheckpointError, ConfigError
from dimatting.hub import resolve_checkpoint
from dimatting.io import write_text

logger = logging.getLogger("dimatting")

ITER_RE = re.compile(r"^iter_(\d+)\.pth$")
BEST_RE = re.compile(r"^best_(\w+?)_iter_(\d+)\.pth$")
DATASET_META = {"dataset_type": "matting_dataset", "task_name": "matting"}


def payload(model: nn.Module, optimizer: Any, scaler: Any, state: TrainState, cfg_text: str,
            experiment_name: str) -> dict[str, Any]:
    """The checkpoint dict, the one place it is built: mmagic's `meta`/`state_dict`/`optimizer`, and ours."""
    ckpt: dict[str, Any] = {
        "meta": {
            "epoch": 0,
            "iter": state.iteration,
            "cfg": cfg_text,
            "seed": state.seed,
            "experiment_name": experiment_name,
            "time": time.strftime("%Y%m%d_%H%M%S", time.localtime()),
            "dimatting_version": __version__,
            "dataset_meta": dict(DATASET_META),
        },
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        SECTION: state.section(),
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


def _write(path: Path, ckpt: dict[str, Any]) -> None:
    """`save_checkpoint` with a one-line error when the disk is full or unwritable; the file is written to a
    temporary name and renamed, so a failed write leaves every earlier checkpoint as it was."""
    try:
        save_checkpoint(path, ckpt)
    except (OSError, RuntimeError) as exc:  # torch.save's zip writer reports a failed write as RuntimeError
        if isinstance(exc, RuntimeError) and "write" not in str(exc).lower():
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[-1]
        free = shutil.disk_usage(path.parent).free / 2**20 if path.parent.is_dir() else 0
        raise CheckpointError(
            f"{path}: writing the checkpoint failed ({reason}; {free:.0f} MiB free there); the earlier "
            "checkpoints are intact: free disk space or pass --work-dir on another disk, then --resume"
        ) from exc


def save_iteration(work_dir: Path, ckpt: dict[str, Any], max_keep: int) -> Path:
    """Write `iter_<N>.pth`, point `last_checkpoint` at it, and drop the oldest beyond `max_keep` (> 0)."""
    iteration = ckpt["meta"]["iter"]
    logger.info("Saving checkpoint at %d iterations", iteration)
    path = work_dir / f"iter_{iteration}.pth"
    _write(path, ckpt)
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
    _write(path, ckpt)
    for _, old in best_checkpoints(work_dir, metric):
        if old != path:
            old.unlink(missing_ok=True)
    logger.info("The best checkpoint with %.4f %s at %d iter is saved to %s", ckpt[SECTION]["best"]["value"],
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


def resume_candidates(work_dir: Path) -> list[Path]:
    """Checkpoints `--resume` may continue from, best first: the one `last_checkpoint` names, then every
    `iter_N.pth` from the newest down."""
    named = last_checkpoint(work_dir)
    ordered = [named] if named is not None else []
    return ordered + [p for _, p in reversed(iter_checkpoints(work_dir)) if p != named]


def find_resume(work_dir: Path, resume: bool | str | None) -> tuple[Path, dict[str, Any], TrainState] | None:
    """`--resume` -> (file, checkpoint, its TrainState), or None to start from scratch.

    A named file (a path, URL or released model name) must load. With `--resume` alone, a corrupt or truncated
    newest checkpoint (a node died mid-write, a disk filled) is skipped with a warning naming it, for the newest
    one that loads; when there are checkpoints but none loads, training stops rather than silently starting
    again. A work dir without any checkpoint starts from scratch with a warning, as the reference does.
    """
    if not resume:
        return None
    if isinstance(resume, str):
        path = resolve_checkpoint(resume)
        if not path.is_file():
            raise CheckpointError(f"{path}: --resume checkpoint not found; check the path or use --resume alone")
        ckpt = load_checkpoint(path)
        return path, ckpt, TrainState.from_checkpoint(ckpt, path)
    candidates = resume_candidates(work_dir)
    if not candidates:
        if (work_dir / "last_checkpoint").is_file():
            raise CheckpointError(f"{work_dir / 'last_checkpoint'}: names a checkpoint that is gone and no "
                                  "iter_N.pth is left to resume; restore the file or start a new --work-dir")
        logger.warning("Did not find last_checkpoint to be resumed in %s; training from the start.", work_dir)
        return None
    for path in candidates:
        try:
            ckpt = load_checkpoint(path)
            return path, ckpt, TrainState.from_checkpoint(ckpt, path)
        except (CheckpointError, ConfigError) as exc:
            logger.warning("Cannot resume from %s (%s); trying an older checkpoint", path, exc)
    raise CheckpointError(
        f"{work_dir}: none of its {len(candidates)} checkpoints can be resumed ({', '.join(p.name for p in candidates)}"
        "); see the warnings above, restore a good file or start a new --work-dir"
    )
