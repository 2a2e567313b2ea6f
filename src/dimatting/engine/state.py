"""`TrainState`: everything a run knows besides its weights, optimiser and AMP scaler.

Exact resume rests on one fact: the data stream is a pure function of (seed, global sample number) (see
`sampler.py`) and DIM has no dropout, so weights + Adam state + this object are the whole run. The state is
stored, as plain values, as the checkpoint's own `dimatting` section; `meta` repeats `iter` and `seed` under
the reference's names so that mmagic reads our checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dimatting.engine.logging import Window
from dimatting.errors import ConfigError

SECTION = "dimatting"


@dataclass
class TrainState:
    """Iterations done, samples drawn (over all ranks), the seed, the best validation score so far and the
    moving-mean window of the log lines (so a resumed run prints the same means)."""

    seed: int
    iteration: int = 0
    samples_seen: int = 0
    best: dict[str, Any] | None = None
    window: Window = field(default_factory=Window)

    def section(self) -> dict[str, Any]:
        """The checkpoint's `dimatting` section: plain values only (loads with `weights_only=True`)."""
        return {
            "iteration": self.iteration,
            "seed": self.seed,
            "samples_seen": self.samples_seen,
            "best": self.best,
            "log_window": self.window.state(),
        }

    def improves(self, metric: str, value: float) -> bool:
        """True when `value` of `metric` beats the best so far (lower is better for every DIM metric)."""
        return self.best is None or self.best.get("metric") != metric or value < self.best["value"]

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], path: Path) -> TrainState:
        """The state a checkpoint was saved with; a clear error for files that cannot be resumed exactly
        (weights without optimiser or state, e.g. a released model)."""
        section, meta = ckpt.get(SECTION), ckpt.get("meta")
        if not isinstance(section, dict) or not isinstance(meta, dict) or "optimizer" not in ckpt:
            raise ConfigError(
                f"{path}: not a dimatting training checkpoint (no optimizer/resume state); "
                "use it as starting weights with --cfg-options load_from=PATH instead of --resume"
            )
        return cls(
            seed=int(section.get("seed", meta.get("seed", 0))),
            iteration=int(section.get("iteration", meta.get("iter", 0))),
            samples_seen=int(section.get("samples_seen", 0)),
            best=section.get("best"),
            window=Window(section.get("log_window")),
        )
