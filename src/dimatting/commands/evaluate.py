"""`dim evaluate PRED_DIR GT_DIR TRIMAP_DIR`: SAD/MSE/GRAD/CONN of saved predictions, as mmagic computes them.

Predictions (`.png` uint8 or `.npy` float in [0, 1]) are matched to GT alphas and trimaps by file stem. A
Comp-1k test set names its 1,000 composites `<fg stem>_<bg index>` but keeps 50 GT alphas: when no file has
a prediction's stem, that suffix is dropped (for the GT and the trimap lookup separately). Images are read and
scored in parallel processes (`--workers`, by default one per core once there are enough images), each GT alpha
and trimap read once; the table goes to stdout, `--csv`/`--json` are written atomically.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tqdm import tqdm

from dimatting.errors import InputError
from dimatting.io import files_by_stem, write_json, write_text
from dimatting.metrics import IMAGES_PER_WORKER, METRIC_NAMES, PROTOCOLS, evaluate, format_table

PRED_SUFFIXES = (".png", ".npy")
MAP_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
COMPOSITE = re.compile(r"^(?P<fg>.+)_\d+$")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        description="Score predicted alpha mattes (PNG or .npy) against GT alphas over the trimaps' unknown "
                    "region; files are matched by stem (Comp-1k '<fg>_<bg index>' names fall back to '<fg>').")
    parser.add_argument("pred_dir", type=Path, help="folder of predictions (<stem>.png or <stem>.npy)")
    parser.add_argument("gt_dir", type=Path, help="folder of GT alphas")
    parser.add_argument("trimap_dir", type=Path, help="folder of trimaps")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="mmagic",
                        help="mmagic (default) or the original DIM MATLAB evaluation; see docs/metrics.md")
    parser.add_argument("--workers", type=_workers, default="auto",
                        help=f"parallel processes, or auto (default): one per core, at most one per "
                             f"{IMAGES_PER_WORKER} images")
    parser.add_argument("--csv", type=Path, help="also write name,SAD,MSE,GRAD,CONN rows here")
    parser.add_argument("--json", type=Path, help="also write the result JSON here")
    parser.add_argument("--per-image", action="store_true", help="print one row per image before the mean")
    parser.set_defaults(func=run)


def _workers(text: str) -> int | str:
    """argparse type of --workers: a process count >= 1 or 'auto'."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a process count (e.g. 2) or auto") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: give 1 or more processes")
    return value


def _files(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """stem -> file for the files of `folder` with one of `suffixes` (two files with one stem: an error)."""
    found, taken = files_by_stem(folder, suffixes, what)
    if taken:
        raise InputError(f"{taken[0]}: {found[taken[0].stem].name} has the same stem; keep one {what} per image")
    return found


def _lookup(stem: str, files: dict[str, Path]) -> Path | None:
    """The file for `stem`, else (Comp-1k composites) the file for its `<fg stem>` part."""
    if stem in files:
        return files[stem]
    match = COMPOSITE.match(stem)
    return files.get(match.group("fg")) if match else None


def _missing(names: list[str], total: int, what: str, folder: Path) -> str:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"{len(names)} of {total} predictions have no {what} in {folder} (e.g. {shown})"


def pair_files(pred_dir: Path, gt_dir: Path, trimap_dir: Path) -> tuple[list[str], list[Path], list[Path], list[Path]]:
    """Names, prediction, GT and trimap paths, in name order; an `InputError` lists what is missing."""
    preds = _files(pred_dir, PRED_SUFFIXES, "prediction")
    if not preds:
        raise InputError(f"{pred_dir}: no predictions (*.png or *.npy) found; point PRED_DIR at saved mattes")
    gts, trimaps = _files(gt_dir, MAP_SUFFIXES, "GT alpha"), _files(trimap_dir, MAP_SUFFIXES, "trimap")
    names = sorted(preds)
    gt_paths = [_lookup(n, gts) for n in names]
    trimap_paths = [_lookup(n, trimaps) for n in names]
    problems = []
    no_gt = [n for n, p in zip(names, gt_paths, strict=True) if p is None]
    no_trimap = [n for n, p in zip(names, trimap_paths, strict=True) if p is None]
    if no_gt:
        problems.append(_missing(no_gt, len(names), "GT alpha", gt_dir))
    if no_trimap:
        problems.append(_missing(no_trimap, len(names), "trimap", trimap_dir))
    if problems:
        raise InputError("; ".join(problems) + "; add them or remove those predictions")
    return names, [preds[n] for n in names], gt_paths, trimap_paths  # type: ignore[return-value]


def to_csv(result: dict) -> str:
    """`name,SAD,MSE,GRAD,CONN` rows with full precision (repr of the floats)."""
    lines = ["name," + ",".join(METRIC_NAMES)]
    lines += [name + "," + ",".join(repr(values[m]) for m in METRIC_NAMES) for name, values in result["images"].items()]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    names, preds, gts, trimaps = pair_files(args.pred_dir, args.gt_dir, args.trimap_dir)
    with tqdm(total=len(names), desc="evaluate", unit="img", disable=None) as bar:
        result = evaluate(preds, gts, trimaps, protocol=args.protocol, names=names, workers=args.workers,
                          progress=lambda done: bar.update(done - bar.n))
    print(format_table(result, per_image=args.per_image))
    if args.csv:
        write_text(args.csv, to_csv(result))
    if args.json:
        write_json(args.json, result)
    return 0
