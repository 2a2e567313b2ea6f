"""Command lines of `tools/train.py` and `tools/test.py` (the reference's argument names), as functions.

The tools are three-line wrappers around `train_main`/`test_main`, so they work from a fresh clone after
`pip install -e .` and tests can call them in-process. Errors meant for people print one line and exit 2
(a run stopped by SIGTERM/SIGINT after saving: 128 + the signal number).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch

from dimatting import config
from dimatting.data.decoded_cache import DEFAULT_MAX_GIB
from dimatting.engine import dist, quickstart
from dimatting.engine.logging import close_logs, error_to_files
from dimatting.engine.runconfig import RunConfig
from dimatting.errors import ConfigError, DimattingError

logger = logging.getLogger("dimatting")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", help="the dir to save logs and models (default ./work_dirs/<config stem>)")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config settings, e.g. train_cfg.max_iters=100 randomness.seed=0")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                        help="job launcher ('pytorch' = torchrun, what dist_train.sh uses; 'slurm' = srun, what "
                             "slurm_train.sh uses)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tools/train.py", description="Train a DIM model from a config")
    parser.add_argument("config", help="train config file path")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                        help="resume from CKPT (a file or URL), or without one from <work_dir>/last_checkpoint")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: bf16 autocast on CPUs and Ampere or newer GPUs, fp16 autocast + loss "
                             "scaling on older GPUs")
    parser.add_argument("--compile", action="store_true",
                        help="compile the training step with torch.compile (faster on a GPU after a slow start)")
    parser.add_argument("--decode-cache", default="auto", metavar="auto|off|DIR",
                        help="decode each training image once and keep its raw pixels in DIR (default auto: on when "
                             "training on a GPU, in $DIMATTING_DECODE_CACHE or ~/.cache/dimatting/decoded)")
    parser.add_argument("--decode-cache-gb", type=float, default=DEFAULT_MAX_GIB, metavar="GB",
                        help="the decode cache stops growing at this size (default %(default)g); it keeps 10%% of "
                             "the disk (at most 10 GiB) free")
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


def load_run(args: argparse.Namespace, resume: bool | str = False, **choices: Any) -> RunConfig:
    """Config + --cfg-options + work dir (CLI, else the config's `work_dir`, else ./work_dirs/<stem>); `choices`
    are the command line's other `RunConfig` fields (amp, compile, decode_cache...), RunConfig's defaults
    where absent."""
    if args.launcher == "mpi":
        raise ConfigError("--launcher mpi is not supported; use torchrun (./tools/dist_train.sh) or srun "
                          "(./tools/slurm_train.sh)")
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
    return RunConfig(cfg=cfg, config_path=path, work_dir=work_dir, resume=resume, launcher=args.launcher, **choices)


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
        print(f"{exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        close_logs()
        dist.cleanup()


def _train(args: argparse.Namespace) -> None:
    from dimatting.engine.tester import test
    from dimatting.engine.trainer import train

    run = load_run(args, resume=args.resume, amp=args.amp, compile=args.compile, decode_cache=args.decode_cache,
                   decode_cache_gb=args.decode_cache_gb)
    quickstart.prepare_data(run.cfg, run.launcher)
    result = train(run, quickstart.TimeCheck(run.cfg) if quickstart.settings(run.cfg) else None)
    if quickstart.settings(run.cfg).get("test"):
        checkpoint = result.best or result.last
        logger.info("Testing %s on the test set", checkpoint)
        test(run, checkpoint, baseline=True, start_logging=False)


def _test(args: argparse.Namespace) -> None:
    from dimatting.engine.tester import test

    run = load_run(args)
    test(run, args.checkpoint, save_path=args.save_path and Path(args.save_path),
         out=args.out and Path(args.out), baseline=True)


def train_main(argv: list[str] | None = None) -> int:
    """`python tools/train.py CONFIG [--work-dir D] [--resume [CKPT]] [--amp] [--compile] [--cfg-options ...]
    [--launcher]`."""
    return _run(_train, train_parser().parse_args(argv))


def test_main(argv: list[str] | None = None) -> int:
    """`python tools/test.py CONFIG CHECKPOINT [--work-dir D] [--save-path DIR] [--out F] [--cfg-options ...]`."""
    return _run(_test, test_parser().parse_args(argv))
