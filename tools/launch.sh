# Sourced by the launchers (dist_train.sh, dist_test.sh, slurm_train.sh, slurm_test.sh): what
# they share. A launcher checks its arguments with usage_unless and hands them to
# torchrun_tool or srun_tool, which run tools/<tool> with this checkout first on PYTHONPATH.
LAUNCH_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# usage_unless MIN USAGE ARGS...: exits 2 with "usage: <launcher> USAGE" when ARGS has fewer
# than MIN words.
usage_unless() {
    local min=$1 usage=$2
    shift 2
    if [ $# -lt "$min" ]; then
        echo "usage: $0 $usage" >&2
        exit 2
    fi
}

# find_python REPO: sets PYTHON to an interpreter that has torch. Order: $PYTHON if set; the
# active environment's `python`; the project's venv (${MMSGFORMER_VENV:-REPO/.venv}, what
# `make` creates). Fails with the fix otherwise.
find_python() {
    local repo=$1 venv_python=${MMSGFORMER_VENV:-$1/.venv}/bin/python
    if [ -n "${PYTHON:-}" ]; then
        return 0
    elif command -v python >/dev/null 2>&1 && python -c 'import torch' 2>/dev/null; then
        PYTHON=python
    elif [ -x "$venv_python" ]; then
        PYTHON=$venv_python
    else
        echo "error: no Python with torch found: activate the project's environment" \
             "(source .venv/bin/activate, created by 'make demo' or 'make test') or set PYTHON=..." >&2
        exit 2
    fi
}

# torchrun_tool NUM_PROCS TOOL ARGS...: tools/TOOL ARGS in NUM_PROCS processes on this node
# (torchrun); for several nodes set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
torchrun_tool() {
    local nprocs=$1 tool=$2
    shift 2
    find_python "$LAUNCH_TOOLS/.."
    PYTHONPATH="$LAUNCH_TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
    exec "$PYTHON" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --master_port="${PORT:-29500}" \
        --nproc_per_node="$nprocs" \
        "$LAUNCH_TOOLS/$tool" "$@"
}

# srun_tool PARTITION JOB_NAME TOOL ARGS...: tools/TOOL ARGS as a Slurm job of one task per GPU:
# GPUS tasks (default 8), GPUS_PER_NODE (8) per node, CPUS_PER_TASK (5) cores each; SRUN_ARGS
# go to srun.
srun_tool() {
    local partition=$1 job_name=$2 tool=$3 gpus_per_node=${GPUS_PER_NODE:-8}
    shift 3
    find_python "$LAUNCH_TOOLS/.."
    # shellcheck disable=SC2086
    PYTHONPATH="$LAUNCH_TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
    srun -p "$partition" \
        --job-name="$job_name" \
        --gres=gpu:"$gpus_per_node" \
        --ntasks="${GPUS:-8}" \
        --ntasks-per-node="$gpus_per_node" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS:-} \
        "$PYTHON" -u "$LAUNCH_TOOLS/$tool" "$@"
}
