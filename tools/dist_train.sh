#!/usr/bin/env bash
# Multi-process training with torchrun: ./tools/dist_train.sh CONFIG NUM_GPUS [train.py args...]
# Nodes, rank and rendezvous come from the environment (tools/torchrun_tool.sh). CUDA_VISIBLE_DEVICES=-1 runs
# NUM_GPUS CPU processes (gloo backend).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG NUM_GPUS [train.py args...]" >&2
    exit 2
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
exec "$HERE/torchrun_tool.sh" "$2" train.py "$1" "${@:3}"
