#!/usr/bin/env bash
# Testing on a SLURM cluster with srun, in the reference's form:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#       ./tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# Each of the GPUS tasks (tools/srun_tool.sh) scores every GPUS-th test image; the results are gathered in
# dataset order, so the numbers equal a single process's.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]" >&2
    exit 2
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
exec "$HERE/srun_tool.sh" "$1" "$2" test.py "$3" "$4" --launcher="slurm" "${@:5}"
