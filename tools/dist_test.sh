#!/usr/bin/env bash
# Multi-process testing with torchrun: ./tools/dist_test.sh CONFIG CHECKPOINT NUM_GPUS [test.py args...]
# Nodes, rank and rendezvous come from the environment (tools/torchrun_tool.sh).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NUM_GPUS [test.py args...]" >&2
    exit 2
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
exec "$HERE/torchrun_tool.sh" "$3" test.py "$1" "$2" "${@:4}"
