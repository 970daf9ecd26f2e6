# Sourced by the launchers (dist_*.sh, slurm_*.sh): sets PYTHON to an interpreter that has torch.
# Order: $PYTHON if set; the active environment's `python`; the project's venv
# (${MMSGFORMER_VENV:-<repo>/.venv}, what `make` creates). Fails with the fix otherwise.
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
