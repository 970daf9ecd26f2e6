#!/usr/bin/env bash
# Multi-process training with torchrun on one or more nodes.
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
# Without CUDA the processes use gloo on the CPU automatically (mmsgformer/engine/dist.py).
set -euo pipefail
# shellcheck source=launch.sh
source "$(dirname "${BASH_SOURCE[0]}")/launch.sh"
usage_unless 2 'CONFIG NUM_PROCS [train.py args...]' "$@"
torchrun_tool "$2" train.py "$1" --launcher pytorch "${@:3}"
