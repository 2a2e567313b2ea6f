#!/usr/bin/env bash
# Multi-process training with torchrun: ./tools/dist_train.sh CONFIG NUM_GPUS [train.py args...]
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1), as the reference's script
# (tools/torchrun_tool.sh). CUDA_VISIBLE_DEVICES=-1 runs NUM_GPUS CPU processes (gloo backend).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_GPUS [train.py args...]" >&2
    exit 2
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
exec "$HERE/torchrun_tool.sh" "$2" train.py "$1" --launcher pytorch "${@:3}"
