"""mmagic's own SAD/MSE/GRAD/CONN over folders of PNGs, as one process: the baseline of bench_evaluate.py.

Run with a Python that has mmagic 1.2.0 (with mmengine, mmcv-lite, torch), never the project's own:

    MMAGIC_PYTHON path/to/python benchmarks/mmagic_evaluate.py PRED_DIR GT_DIR TRIMAP_DIR

It does what an mmagic user scoring saved mattes does: import mmagic's four matting metrics, read each
prediction, GT alpha and trimap with `mmcv.imread(..., flag="grayscale")`, pack them as mmagic's test loop
does (`ori_alpha`/`ori_trimap` 1xHxW tensors, `output.pred_alpha` HxW), and call each metric's `process` and
`compute_metrics`. mmagic's `mmagic.evaluation` package imports every metric of the toolbox (diffusers,
transformers, ...); the four matting metric modules are loaded directly instead, with their code unchanged,
which only makes this baseline start faster. Prints the mean of each metric as JSON.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path


def load_metrics() -> list:
    import mmagic

    base = Path(mmagic.__path__[0])
    for name in ("evaluation", "evaluation.metrics"):  # skip the packages' __init__ (every other metric)
        package = types.ModuleType(f"mmagic.{name}")
        package.__path__ = [str(base / name.replace(".", "/"))]
        sys.modules[f"mmagic.{name}"] = package
    from mmagic.evaluation.metrics.connectivity_error import ConnectivityError
    from mmagic.evaluation.metrics.gradient_error import GradientError
    from mmagic.evaluation.metrics.matting_mse import MattingMSE
    from mmagic.evaluation.metrics.sad import SAD

    return [SAD(), MattingMSE(), GradientError(), ConnectivityError()]


def main() -> None:
    pred_dir, gt_dir, trimap_dir = (Path(a) for a in sys.argv[1:4])
    metrics = load_metrics()
    import mmcv
    import torch

    for pred_path in sorted(pred_dir.glob("*.png")):
        pred = mmcv.imread(str(pred_path), flag="grayscale")
        gt = mmcv.imread(str(gt_dir / pred_path.name), flag="grayscale")
        trimap = mmcv.imread(str(trimap_dir / pred_path.name), flag="grayscale")
        sample = {"ori_alpha": torch.from_numpy(gt)[None], "ori_trimap": torch.from_numpy(trimap)[None],
                  "output": {"pred_alpha": torch.from_numpy(pred)}}
        for metric in metrics:
            metric.process([{}], [sample])
    means = {}
    for metric in metrics:
        means.update(metric.compute_metrics(metric.results))
    print(json.dumps(means))


if __name__ == "__main__":
    main()
