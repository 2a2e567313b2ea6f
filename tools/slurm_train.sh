#!/usr/bin/env bash
# Training on a SLURM cluster with srun, in the reference's form:
#   [GPUS=16] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       ./tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# srun starts GPUS tasks, GPUS_PER_NODE per node (tools/srun_tool.sh); each runs tools/train.py --launcher slurm,
# which takes its rank from SLURM's variables and the rendezvous address from the first node of the allocation.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" >&2
    exit 2
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
exec "$HERE/srun_tool.sh" "$1" "$2" train.py "$3" --work-dir="$4" --launcher="slurm" "${@:5}"
