#!/usr/bin/env bash
# Multi-process testing with torchrun.
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
# Without CUDA the processes use gloo on the CPU automatically (mmsgformer/engine/dist.py).
set -euo pipefail
# shellcheck source=launch.sh
source "$(dirname "${BASH_SOURCE[0]}")/launch.sh"
usage_unless 3 'CONFIG CHECKPOINT NUM_PROCS [test.py args...]' "$@"
torchrun_tool "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
