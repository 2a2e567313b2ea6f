"""`dim predict`: alpha mattes (and optional RGBA cutouts) for one image or a folder of images.

Single image: `--image IMG (--trimap TRI | --mask MASK) --checkpoint CKPT -o ALPHA.png [--cutout [RGBA.png]]`.
Folder: `--input-dir D (--trimap-dir T | --mask-dir M) --output-dir O [--cutout]`, pairing files by stem;
images without a trimap (or mask) are listed and the others still run. Every file is written atomically,
and only after everything it depends on succeeded, so a failure never leaves a partial output.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dimatting.errors import DimattingError, InputError
from dimatting.io import files_by_stem, write_image
from dimatting.tiling import DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE, DEFAULT_TILE_THRESHOLD
from dimatting.trimap import DEFAULT_BAND, read_image_and_trimap

if TYPE_CHECKING:
    from dimatting.accel import PendingAlpha
    from dimatting.inference import Matter, PreparedPair

logger = logging.getLogger("dimatting.predict")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        description="Predict the alpha matte of an image (or a folder of images) from a trimap or a rough mask.",
    )
    single = parser.add_argument_group("one image")
    single.add_argument("--image", type=Path, help="input photo (RGB, RGBA or grayscale)")
    single.add_argument("--trimap", type=Path, help="trimap: 0 background, 128 unknown, 255 foreground")
    single.add_argument("--mask", type=Path, help="rough binary mask (white = object), used to build a trimap")
    single.add_argument("-o", "--output", type=Path, help="alpha PNG to write")
    folder = parser.add_argument_group("a folder of images (paired by file stem)")
    folder.add_argument("--input-dir", type=Path, help="folder of input photos")
    folder.add_argument("--trimap-dir", type=Path, help="folder of trimaps named like the photos")
    folder.add_argument("--mask-dir", type=Path, help="folder of masks, used for photos without a trimap")
    folder.add_argument("--output-dir", type=Path, help="folder for <stem>.png alphas (and cutouts)")
    parser.add_argument(
        "--checkpoint", required=True,
        help="DIM checkpoint: .pth, .safetensors, or .onnx from dim export-onnx (runs in onnxruntime); a file, "
        "an http(s)/file URL, or a released model's name (dim models), downloaded once into torch.hub's cache",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    parser.add_argument(
        "--cutout", nargs="?", const=True, default=None, metavar="RGBA.png",
        help="also write the cut-out object as RGBA (foreground colours by pymatting); one image: a path "
        "(default <output stem>_cutout.png), folder: <stem>_cutout.png",
    )
    parser.add_argument(
        "--save-trimap", nargs="?", const=True, default=None, metavar="TRIMAP.png",
        help="also write the trimap used (handy with --mask); folder: <stem>_trimap.png",
    )
    parser.add_argument("--band", type=int, default=DEFAULT_BAND, help="with masks: unknown band width in px each side")
    parser.add_argument(
        "--trimap-tolerant", action="store_true", help="map stray trimap values to the nearest of 0/128/255"
    )
    parser.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE, help="tile side for large images")
    parser.add_argument("--tile-overlap", type=int, default=DEFAULT_TILE_OVERLAP, help="tile overlap in px")
    parser.add_argument(
        "--tile-threshold", type=_tile_threshold, default="auto", metavar="PIXELS",
        help=f"tile images with more pixels than this; auto (default): {DEFAULT_TILE_THRESHOLD} on the CPU, "
        "on a GPU what fits in half its free memory",
    )
    parser.add_argument("--no-tiling", action="store_true", help="always run the whole image at once")
    parser.add_argument(
        "--precision", choices=("fp32", "tf32", "bf16"), default=None,
        help="default: tf32 on CUDA (TF32 tensor-core convolutions: PyTorch's GPU default, so the reference's "
        "GPU numerics), fp32 on the CPU; fp32: IEEE fp32 on CUDA too (~3.6x slower there); bf16: the fast path "
        "(GPUs, CPUs with AVX512-BF16/AMX), alphas move by well under 1/255 on average (docs/predict.md)",
    )
    parser.add_argument(
        "--compile", nargs="?", const="default", default=None, metavar="MODE",
        help="torch.compile the whole-image path (MODE: default, reduce-overhead = with CUDA graphs, max-autotune); "
        "each new image size compiles first (tens of seconds), so it pays for long runs of same-size images",
    )
    parser.add_argument(
        "--io-workers", type=int, default=None, metavar="N",
        help="folders: threads that read and write files while the model runs (0: one step after the other; "
        "default: 8 with a GPU, 1 on the CPU, at most the CPU count)",
    )
    parser.add_argument(
        "--reference-layout", action="store_true",
        help="compute in NCHW like the reference on the CPU too (raw output bit-identical to mmagic's; slower)",
    )
    parser.add_argument(
        "--conv-backend", choices=("auto", "nnpack", "onednn"), default="auto",
        help="CPU fp32 convolutions: nnpack (Winograd/FFT, fastest on AVX2 CPUs), onednn (PyTorch's default); "
        "auto (default): nnpack on CPUs without AVX-512 (docs/predict.md)",
    )
    parser.set_defaults(func=run)


@dataclass
class Job:
    """One image to matte and where its results go."""

    image: Path
    trimap: Path | None
    mask: Path | None
    output: Path
    cutout: Path | None
    save_trimap: Path | None


def _tile_threshold(text: str) -> int | str:
    """argparse type of --tile-threshold: a pixel count or 'auto'."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a pixel count (e.g. 1048576) or auto") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: the pixel count must be >= 0")
    return value


def _check_writable_suffix(path: Path, option: str) -> None:
    if path.suffix.lower() not in (".png", ".tif", ".tiff", ".bmp"):
        raise InputError(f"{path}: {option} must be a lossless image (.png, .tif or .bmp); rename it")


def _derived(value: object, output: Path, suffix: str) -> Path | None:
    """`--cutout`/`--save-trimap` given with a path -> that path; given bare -> beside the alpha."""
    if value is None:
        return None
    return output.with_name(f"{output.stem}{suffix}.png") if value is True else Path(str(value))


def _single_job(args: argparse.Namespace) -> Job:
    if args.image is None or args.output is None:
        raise InputError("dim predict: give --image and -o (one image) or --input-dir and --output-dir (folder)")
    if (args.trimap is None) == (args.mask is None):
        raise InputError(f"{args.image}: give exactly one of --trimap or --mask")
    job = Job(args.image, args.trimap, args.mask, args.output, _derived(args.cutout, args.output, "_cutout"),
              _derived(args.save_trimap, args.output, "_trimap"))
    for path, option in ((job.output, "-o"), (job.cutout, "--cutout"), (job.save_trimap, "--save-trimap")):
        if path is not None:
            _check_writable_suffix(path, option)
    return job


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    files, taken = files_by_stem(folder, IMAGE_SUFFIXES, what)
    for path in taken:
        logger.warning("%s: two %s files with stem '%s'; using %s", folder, what, path.stem, files[path.stem])
    return files


def _folder_jobs(args: argparse.Namespace) -> tuple[list[Job], list[str]]:
    if args.output_dir is None:
        raise InputError(f"{args.input_dir}: --input-dir needs --output-dir")
    if args.trimap_dir is None and args.mask_dir is None:
        raise InputError(f"{args.input_dir}: --input-dir needs --trimap-dir and/or --mask-dir")
    for value, option in ((args.cutout, "--cutout"), (args.save_trimap, "--save-trimap")):
        if value not in (None, True):
            raise InputError(f"{value}: with --input-dir, {option} takes no path (files go to --output-dir)")
    images = _by_stem(args.input_dir, "image")
    if not images:
        raise InputError(f"{args.input_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in the input folder")
    trimaps = _by_stem(args.trimap_dir, "trimap") if args.trimap_dir else {}
    masks = _by_stem(args.mask_dir, "mask") if args.mask_dir else {}
    out = args.output_dir
    jobs, missing = [], []
    for stem, image in images.items():
        trimap, mask = trimaps.get(stem), None if stem in trimaps else masks.get(stem)
        if trimap is None and mask is None:
            missing.append(stem)
            continue
        jobs.append(Job(image, trimap, mask, out / f"{stem}.png",
                        out / f"{stem}_cutout.png" if args.cutout else None,
                        out / f"{stem}_trimap.png" if args.save_trimap else None))
    return jobs, missing


def _load_pair(job: Job, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    return read_image_and_trimap(job.image, job.trimap, job.mask, band=args.band, tolerant=args.trimap_tolerant)


def _prepare(matter: Matter, job: Job, args: argparse.Namespace,
             pair: tuple[np.ndarray, np.ndarray] | None = None) -> PreparedPair:
    """Read (unless given) and check one job's image and trimap: the host's share of the work."""
    image, trimap = pair if pair is not None else _load_pair(job, args)
    return matter.prepare(image, trimap, source=job.trimap or job.mask)


def _start(matter: Matter, job: Job, pair: PreparedPair, args: argparse.Namespace,
           show_tiles: bool = False) -> PendingAlpha:
    """Queue one prediction; the alpha comes back as the PNG's uint8 unless a cutout needs the float alpha."""
    tiled = False if args.no_tiling else None
    bar = None
    if show_tiles and not args.no_tiling and matter.uses_tiles(*pair.trimap.shape):
        from tqdm import tqdm

        bar = tqdm(total=matter.count_tiles(*pair.trimap.shape), desc=job.image.name, unit="tile")
    try:
        progress = (lambda n: bar.update(n - bar.n)) if bar is not None else None
        return matter.submit(pair, tiled=tiled, progress=progress, as_uint8=job.cutout is None)
    finally:
        if bar is not None:
            bar.close()


def _save(job: Job, pair: PreparedPair, alpha: np.ndarray) -> None:
    """Write one job's files, each only after everything it depends on succeeded."""
    from dimatting.inference import alpha_to_uint8, cutout_rgba

    rgba = None
    if alpha.dtype != np.uint8:  # float alpha: the cutout's foreground estimation wants it unrounded
        rgba = cutout_rgba(pair.image, alpha)
        alpha = alpha_to_uint8(alpha)
    write_image(job.output, alpha)
    if rgba is not None:
        write_image(job.cutout, rgba)
    if job.save_trimap is not None:
        write_image(job.save_trimap, pair.trimap)


def _io_workers(args: argparse.Namespace, matter: Matter) -> int:
    """--io-workers, or its default: enough readers/writers to keep a GPU fed, one beside a CPU model."""
    if args.io_workers is not None:
        return args.io_workers
    return min(8 if matter.device.type == "cuda" else 1, os.cpu_count() or 1)


def run(args: argparse.Namespace) -> int:
    folder_mode = args.input_dir is not None
    if folder_mode and (args.image is not None or args.output is not None):
        raise InputError(f"{args.input_dir}: use either --image/-o or --input-dir/--output-dir, not both")
    if args.io_workers is not None and args.io_workers < 0:
        raise InputError(f"--io-workers {args.io_workers}: give a thread count >= 0")
    if folder_mode:
        jobs, missing = _folder_jobs(args)
    else:
        jobs, missing = [_single_job(args)], []
        for path in (jobs[0].image, jobs[0].trimap, jobs[0].mask):
            if path is not None and not path.is_file():
                raise InputError(f"{path}: file not found; check the path")
        pair = _load_pair(jobs[0], args)  # bad inputs fail before the (slow) checkpoint load
    if missing:
        logger.warning(
            "%d image(s) without a trimap%s, skipped: %s", len(missing),
            " or mask" if args.mask_dir else "", ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""),
        )
    if not jobs:
        raise InputError(f"{args.input_dir}: no image has a trimap/mask with the same stem; nothing to predict")
    logger.info("%d image(s); loading %s", len(jobs), args.checkpoint)  # a first line before torch's ~1.5 s import
    from dimatting.inference import load_model  # torch is imported only when a command needs it

    matter = load_model(
        args.checkpoint, device=args.device, tile_size=args.tile_size, tile_overlap=args.tile_overlap,
        tile_threshold=None if args.no_tiling else args.tile_threshold, precision=args.precision,
        channels_last=False if args.reference_layout else None, conv_backend=args.conv_backend,
        compile=args.compile,
    )
    if not folder_mode:
        prepared = _prepare(matter, jobs[0], args, pair)
        _save(jobs[0], prepared, _start(matter, jobs[0], prepared, args, show_tiles=True).result())
        print(f"wrote {jobs[0].output}" + (f" and {jobs[0].cutout}" if jobs[0].cutout else ""))
        return 0
    from tqdm import tqdm

    from dimatting.overlap import run_overlapped

    failed = []

    def on_error(job: Job, exc: Exception) -> None:
        logger.error("%s", exc)
        failed.append(job.image.stem)

    with tqdm(total=len(jobs), desc="predict", unit="image") as bar:
        run_overlapped(
            jobs, load=lambda job: _prepare(matter, job, args), start=lambda job, p: _start(matter, job, p, args),
            save=_save, workers=_io_workers(args, matter), on_error=on_error, errors=(DimattingError,),
            progress=bar.update,
        )
    print(f"wrote {len(jobs) - len(failed)} alpha(s) to {args.output_dir}"
          + (f"; {len(failed)} failed: {', '.join(sorted(failed))}" if failed else "")
          + (f"; {len(missing)} without trimap" if missing else ""))
    return 1 if failed else 0
