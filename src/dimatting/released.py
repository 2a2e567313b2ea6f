"""The released DIM checkpoints, by the name of the config that trained them.

mmagic publishes one checkpoint per DIM stage; its model names are the config file stems, so
`--checkpoint dim_stage3-v16-pln_1xb1-1000k_comp1k` means "the released stage-3 weights". The metrics are
the reference's own Comp-1k results for each file (mmagic's configs/dim README: the best of all
validations during its training, not a number measured here).

The download host can be replaced by a mirror holding the same files: set `$DIMATTING_RELEASE_URL` to its
base URL. The `-<hex>` suffix of each file name is a sha256 prefix, so a mirror cannot hand out other bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

RELEASE_URL_ENV = "DIMATTING_RELEASE_URL"
DEFAULT_RELEASE_URL = "https://download.openmmlab.com/mmediting/mattors/dim/"


@dataclass(frozen=True)
class ReleasedModel:
    """One released checkpoint: its config name, training stage, reference Comp-1k metrics and file name."""

    name: str
    stage: int
    metrics: dict[str, float]
    filename: str

    @property
    def url(self) -> str:
        """Where the file is downloaded from: the mirror in `$DIMATTING_RELEASE_URL`, else mmagic's host."""
        base = os.environ.get(RELEASE_URL_ENV) or DEFAULT_RELEASE_URL
        return base.rstrip("/") + "/" + self.filename


def _model(name: str, stage: int, sad: float, mse: float, grad: float, conn: float, filename: str) -> ReleasedModel:
    return ReleasedModel(name, stage, {"SAD": sad, "MSE": mse, "GRAD": grad, "CONN": conn}, filename)


RELEASED: dict[str, ReleasedModel] = {
    model.name: model
    for model in (
        _model("dim_stage1-v16_1xb1-1000k_comp1k", 1, 53.8, 0.017, 32.7, 54.5,
               "dim_stage1_v16_1x1_1000k_comp1k_SAD-53.8_20200605_140257-979a420f.pth"),
        _model("dim_stage2-v16-pln_1xb1-1000k_comp1k", 2, 52.3, 0.016, 29.4, 52.4,
               "dim_stage2_v16_pln_1x1_1000k_comp1k_SAD-52.3_20200607_171909-d83c4775.pth"),
        _model("dim_stage3-v16-pln_1xb1-1000k_comp1k", 3, 50.6, 0.015, 29.0, 50.7,
               "dim_stage3_v16_pln_1x1_1000k_comp1k_SAD-50.6_20200609_111851-647f24b6.pth"),
    )
}
