#!/usr/bin/env bash
# Testing on a Slurm cluster (one task per GPU).
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#       bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
set -euo pipefail
# shellcheck source=launch.sh
source "$(dirname "${BASH_SOURCE[0]}")/launch.sh"
usage_unless 4 'PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]' "$@"
srun_tool "$1" "$2" test.py "$3" "$4" --launcher slurm "${@:5}"
