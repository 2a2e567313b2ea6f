"""Command lines of `tools/train.py` and `tools/test.py` (the reference's argument names), as functions.

The tools are three-line wrappers around `train_main`/`test_main`, so they work from a fresh clone after
`pip install -e .` and tests can call them in-process. Errors meant for people print one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

from dimatting import config
from dimatting.engine import dist
from dimatting.engine.logging import close_logs, error_to_files
from dimatting.engine.runconfig import RunConfig
from dimatting.errors import ConfigError, DimattingError

logger = logging.getLogger("dimatting")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", help="the dir to save logs and models (default ./work_dirs/<config stem>)")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config settings, e.g. train_cfg.max_iters=100 randomness.seed=0")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="job launcher ('pytorch' = torchrun, what dist_train.sh uses)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tools/train.py", description="Train a DIM model from a config")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                        help="resume from CKPT (a file or URL), or without one from <work_dir>/last_checkpoint")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: fp16 autocast + loss scaling on CUDA, bf16 autocast on CPU")
    _common(parser)
    return parser


def test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tools/test.py", description="Test a DIM checkpoint on a config's test set")
    parser.add_argument("config", help="test config file path")
    parser.add_argument("checkpoint", help="checkpoint file, http(s)/file URL, or released model name (dim models)")
    parser.add_argument("--out", help="write the metrics (per image and mean) to this JSON file")
    parser.add_argument("--save-path", help="write each predicted alpha matte to DIR/<merged stem>.png")
    _common(parser)
    return parser


def load_run(args: argparse.Namespace, resume: bool | str = False, amp: bool = False) -> RunConfig:
    """Config + --cfg-options + work dir (CLI, else the config's `work_dir`, else ./work_dirs/<stem>)."""
    if args.launcher in ("slurm", "mpi"):
        raise ConfigError(f"--launcher {args.launcher} is not supported; use torchrun (./tools/dist_train.sh)")
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    path = Path(args.config)
    if not path.is_file():
        raise config.config_not_found(path)
    cfg = config.Config.fromfile(path)
    if args.cfg_options:
        config.merge_options(cfg, args.cfg_options)
    work_dir = Path(args.work_dir or cfg.get("work_dir") or Path("./work_dirs") / path.stem)
    cfg["work_dir"] = str(work_dir)
    resume = resume or bool(cfg.get("resume"))
    return RunConfig(cfg=cfg, config_path=path, work_dir=work_dir, resume=resume, amp=amp, launcher=args.launcher)


def prepare_quickstart_data(run: RunConfig) -> None:
    """The quickstart's `quickstart.synthetic` settings: write the synthetic set if its json is missing."""
    settings = (run.cfg.get("quickstart") or {}).get("synthetic")
    if not settings:
        return
    from dimatting.data.synthetic import make_synthetic

    dataset = run.cfg["train_dataloader"]["dataset"]
    root = Path(dataset.get("data_root", "."))
    info = dist.init_distributed(run.launcher, run.cfg.get("env_cfg", {}).get("dist_cfg"))
    if info.is_main and not (root / dataset["ann_file"]).is_file():
        print(f"Making the synthetic dataset in {root} (first run only)", flush=True)
        make_synthetic(root, int(settings["n_train"]), int(settings["n_test"]), seed=int(settings.get("seed", 0)),
                       size=tuple(settings.get("size", (320, 320))))
    dist.barrier()


def _run(func, args: argparse.Namespace) -> int:
    # Before any parallel torch work: the flag is per thread, and threads started later inherit it.
    torch.set_flush_denormal(True)
    try:
        func(args)
        return 0
    except DimattingError as exc:
        if args.debug:
            raise
        error_to_files(str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        close_logs()
        dist.cleanup()


def _train(args: argparse.Namespace) -> None:
    from dimatting.engine.tester import test
    from dimatting.engine.trainer import train

    run = load_run(args, resume=args.resume, amp=args.amp)
    prepare_quickstart_data(run)
    result = train(run)
    if (run.cfg.get("quickstart") or {}).get("test"):
        checkpoint = result.best or result.last
        logger.info("Testing %s on the test set", checkpoint)
        test(run, checkpoint, baseline=True, start_logging=False)


def _test(args: argparse.Namespace) -> None:
    from dimatting.engine.tester import test

    run = load_run(args)
    test(run, args.checkpoint, save_path=args.save_path and Path(args.save_path),
         out=args.out and Path(args.out), baseline=True)


def train_main(argv: list[str] | None = None) -> int:
    """`python tools/train.py CONFIG [--work-dir D] [--resume [CKPT]] [--amp] [--cfg-options ...] [--launcher]`."""
    return _run(_train, train_parser().parse_args(argv))


def test_main(argv: list[str] | None = None) -> int:
    """`python tools/test.py CONFIG CHECKPOINT [--work-dir D] [--save-path DIR] [--out F] [--cfg-options ...]`."""
    return _run(_test, test_parser().parse_args(argv))
