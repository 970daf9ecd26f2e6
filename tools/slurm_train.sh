#!/usr/bin/env bash
# Training on a Slurm cluster (one task per GPU).
#   [GPUS=16] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#       bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
set -euo pipefail
# shellcheck source=launch.sh
source "$(dirname "${BASH_SOURCE[0]}")/launch.sh"
usage_unless 4 'PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]' "$@"
srun_tool "$1" "$2" train.py "$3" --work-dir="$4" --launcher slurm "${@:5}"
