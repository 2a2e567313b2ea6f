#!/usr/bin/env bash
# Multi-process testing with torchrun: ./tools/dist_test.sh CONFIG CHECKPOINT NUM_GPUS [test.py args...]
# Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1), as the reference's script
# (tools/torchrun_tool.sh).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NUM_GPUS [test.py args...]" >&2
    exit 2
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
exec "$HERE/torchrun_tool.sh" "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
