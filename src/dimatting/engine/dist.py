"""Process group from torchrun's or SLURM's environment, and the few collective helpers the engine needs.

torchrun (what `tools/dist_train.sh` runs) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
under `srun` (`tools/slurm_train.sh`, `--launcher slurm`) they are derived from SLURM's variables.
Everything here degrades to a no-op in a single process, so the training loop reads the same either way:
`is_main()` guards logging and saving, `gather_objects` collects per-rank results for the metrics.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

import torch
import torch.distributed as tdist

from dimatting.errors import ConfigError

logger = logging.getLogger("dimatting")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among `world_size` processes and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; unset it or fix it") from exc


def pick_device(local_rank: int = 0) -> torch.device:
    """CUDA device `local_rank` when CUDA is usable (CUDA_VISIBLE_DEVICES=-1 hides it), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `gpu[07-09,12],cpu3` -> `gpu07` (what `scontrol show hostnames`
    prints first; parsed here so that no SLURM binary is needed)."""
    match = re.match(r"([^\[,]*)(?:\[([^\]]*)\])?([^,]*)", nodelist.strip())
    if not match or not match.group(0):
        raise ConfigError(f"SLURM_NODELIST={nodelist!r} is not a node list; set MASTER_ADDR to the first node's name")
    prefix, ranges, suffix = match.groups()
    first = re.split(r"[,-]", ranges)[0] if ranges else ""
    return f"{prefix}{first}{suffix}"


def slurm_environment() -> None:
    """torchrun's variables from `srun`'s (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE,
    SLURM_NODELIST), as mmengine's SLURM launcher does; MASTER_ADDR/MASTER_PORT already set are kept (the
    reference's slurm_train.sh exports a port), else the first node and port 29500."""
    missing = [name for name in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST") if name not in os.environ]
    if missing:
        raise ConfigError(f"--launcher slurm needs srun's environment ({', '.join(missing)} not set); start it "
                          "with ./tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR")
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    per_node = os.environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
    if per_node.isdigit():
        os.environ["LOCAL_WORLD_SIZE"] = per_node
    os.environ.setdefault("MASTER_ADDR", first_host(os.environ["SLURM_NODELIST"]))
    os.environ.setdefault("MASTER_PORT", "29500")


def init_distributed(launcher: str = "none", dist_cfg: dict | None = None) -> DistInfo:
    """Join the process group when launched with `--launcher pytorch` (torchrun), `--launcher slurm` (srun), or
    with WORLD_SIZE > 1.

    Backend: `env_cfg.dist_cfg.backend` (the configs say nccl) on GPU; gloo on CPU, where nccl cannot run.
    """
    if launcher not in ("none", "pytorch", "slurm"):
        raise ConfigError(f"--launcher {launcher} is not supported; use 'none', 'pytorch' (torchrun) or 'slurm'")
    if launcher == "slurm":
        slurm_environment()
    world_size = _env_int("WORLD_SIZE", 1)
    if launcher == "none" and world_size == 1:
        return DistInfo(device=pick_device(0))
    if "MASTER_ADDR" not in os.environ or "RANK" not in os.environ:
        raise ConfigError(
            "--launcher pytorch needs torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR); "
            "start it with ./tools/dist_train.sh CONFIG NUM_GPUS"
        )
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = pick_device(local_rank)
    if device.type == "cuda":
        backend = str((dist_cfg or {}).get("backend", "nccl"))
        local_world, n_gpus = _env_int("LOCAL_WORLD_SIZE", world_size), torch.cuda.device_count()
        if backend == "nccl" and local_world > n_gpus:
            # nccl cannot put two ranks on one GPU ("Duplicate GPU detected"), an error deep in the first collective
            raise ConfigError(
                f"{local_world} processes on this machine but {n_gpus} visible GPU(s): nccl needs one GPU per "
                f"process; start {n_gpus} (./tools/dist_train.sh CONFIG {n_gpus}) or CPU processes "
                "(CUDA_VISIBLE_DEVICES=-1)"
            )
        torch.cuda.set_device(device)
    else:
        backend = "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def barrier() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank `src`'s value on every rank (the run's seed and timestamp must agree everywhere)."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return obj
    holder = [obj]
    tdist.broadcast_object_list(holder, src=src)
    return holder[0]


def gather_objects(obj: object) -> list[object]:
    """Every rank's `obj`, in rank order, on every rank (a one-element list in a single process)."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return [obj]
    out: list[object] = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def all_reduce_int(value: int, op: str, device: torch.device | None = None) -> int:
    """The max or min of `value` over all ranks (`op` 'max' or 'min'), so that every rank takes the same
    decision (stop on a signal, stop at the first NaN). One small all-reduce on `device`, the process's compute
    device (nccl needs a CUDA tensor); in a single process the value itself."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return int(value)
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    tdist.all_reduce(tensor, op=tdist.ReduceOp.MAX if op == "max" else tdist.ReduceOp.MIN)
    return int(tensor.item())


def cleanup() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
