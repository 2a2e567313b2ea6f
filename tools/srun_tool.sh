#!/usr/bin/env bash
# What tools/slurm_train.sh and tools/slurm_test.sh share, in the reference's form: run TOOL (train.py or
# test.py, with its arguments) in GPUS srun tasks, GPUS_PER_NODE per node, CPUS_PER_TASK cores each, plus
# SRUN_ARGS. MASTER_PORT: a random port in 12000-31999 unless set (as the reference's scripts, which always
# pick one); the rendezvous address is the allocation's first node.
#   tools/srun_tool.sh PARTITION JOB_NAME TOOL [TOOL args...]
set -euo pipefail
export MASTER_PORT=${MASTER_PORT:-$((12000 + RANDOM % 20000))}
PARTITION=$1
JOB_NAME=$2
TOOL=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
HERE="$(cd "$(dirname "$0")" && pwd)"
set -x
# shellcheck disable=SC2086  # SRUN_ARGS is a list of options
PYTHONPATH="$HERE/..:${PYTHONPATH:-}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    python -u "$HERE/$TOOL" "$@"
