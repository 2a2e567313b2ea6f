#!/usr/bin/env bash
# What tools/dist_train.sh and tools/dist_test.sh share, in the reference's form: run TOOL (train.py or
# test.py, with its arguments) in NPROC processes on this node with torchrun.
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1), as the reference's scripts.
#   tools/torchrun_tool.sh NPROC TOOL [TOOL args...]
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 NPROC TOOL [TOOL args...]" >&2
    exit 2
fi
NPROC=$1
TOOL=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHONPATH="$HERE/..:${PYTHONPATH:-}" \
exec python -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$HERE/$TOOL" "$@" --launcher pytorch
