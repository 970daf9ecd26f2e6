#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment with the pinned OpenMMLab stack.
#
# Idempotent: a stamp keyed by this script and requirements.txt makes a re-run a no-op.
# The slow part, compiling mmcv's ops (~10 min on 2 cores), is cached as a wheel outside the
# clone in $MMSGFORMER_CACHE (default ~/.cache/mmsgformer), keyed by mmcv, torch and Python
# versions, so fresh clones (CI) reuse it.
#
# Environment variables:
#   MMSGFORMER_VENV   where the virtual environment lives (default: <repo>/.venv)
#   MMSGFORMER_CACHE  where the compiled mmcv wheel is cached (default: ~/.cache/mmsgformer)
#   MMSGFORMER_TORCH  torch version: 2.14.1 (default, the pinned one) or 2.1.2 (the oldest
#                     supported; `make test-torch21` builds such an environment beside .venv)
#   PYTHON            interpreter used to create the venv (default: python3.11 or python3)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMSGFORMER_VENV:-$REPO/.venv}
CACHE=${MMSGFORMER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmsgformer}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

TORCH_VERSION=${MMSGFORMER_TORCH:-2.14.1}
MMCV_VERSION=2.1.0

log() { echo "[setup_env] $*" >&2; }

# torch 2.1 was built against numpy 1; torch 2.14's headers need C++20, while mmcv 2.1.0's
# setup.py forces -std=c++17 (torch 2.1's headers build with it as is).
case "$TORCH_VERSION" in
    2.14.1) TORCHVISION_VERSION=0.29.1; EXTRA_PINS=(); CXX_STD=c++20 ;;
    2.1.2)  TORCHVISION_VERSION=0.16.2; EXTRA_PINS=("numpy<2"); CXX_STD=c++17 ;;
    *) log "ERROR: MMSGFORMER_TORCH=$TORCH_VERSION is not one of the tested versions 2.14.1, 2.1.2"
       exit 1 ;;
esac

stamp_key=$( (cat "$0" "$REPO/requirements.txt" "$REPO/pyproject.toml"; echo "$TORCH_VERSION") \
    | sha256sum | cut -c1-16)
STAMP=$VENV/.mmsgformer-setup-$stamp_key

# Up to date when stamped and its mmsgformer is this clone's (a venv outside the clone, like the
# torch 2.1 one, may have been set up from another clone; checked from / so the cwd does not count).
installed_here() {
    (cd / && "$VENV/bin/python" -c "import os, sys, mmsgformer, mmdet, mmseg, mmpretrain
sys.exit(os.path.realpath(mmsgformer.__file__) != os.path.realpath(sys.argv[1]))" \
        "$REPO/mmsgformer/__init__.py") 2>/dev/null
}
clone_on_path() {  # the .pth file written below names this clone
    local site
    site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
        2>/dev/null) && [ "$(cat "$site/mmsgformer-clone.pth" 2>/dev/null)" = "$REPO" ]
}
if [ -f "$STAMP" ] && installed_here && clone_on_path; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment at $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

log "installing build tools and torch $TORCH_VERSION / torchvision $TORCHVISION_VERSION"
"${PIP[@]}" install -q --upgrade "pip<26.2"
# setuptools<81: mmcv's build and mmengine at run time import pkg_resources. It is repeated in
# every install below because torch's own requirements would otherwise upgrade it.
"${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "setuptools<81" wheel ninja \
    ${EXTRA_PINS[@]+"${EXTRA_PINS[@]}"}

has_mmcv_ops() {
    "$VENV/bin/python" -c "from mmcv.ops import nms, RoIAlign" 2>/dev/null
}

if ! has_mmcv_ops; then
    py_tag=$("$VENV/bin/python" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
    wheel_dir=$CACHE/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$py_tag-$(uname -m)
    if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
        log "building mmcv $MMCV_VERSION with ops against torch $TORCH_VERSION (about 10 minutes on 2 cores)"
        build_dir=$(mktemp -d)
        trap 'rm -rf "$build_dir"' EXIT
        cat > "$build_dir/cxx" <<WRAP
#!/usr/bin/env bash
args=()
for a in "\$@"; do [ "\$a" = "-std=c++17" ] && a="-std=$CXX_STD"; args+=("\$a"); done
exec g++ "\${args[@]}"
WRAP
        chmod +x "$build_dir/cxx"
        PATH="$VENV/bin:$PATH" CXX="$build_dir/cxx" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} \
            "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$build_dir/out" "mmcv==$MMCV_VERSION"
        mkdir -p "$wheel_dir"
        mv "$build_dir"/out/mmcv-*.whl "$wheel_dir/"
    fi
    log "installing mmcv from $wheel_dir"
    "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel_dir"/mmcv-*.whl
fi

log "installing requirements.txt; mmsgformer from this clone (a .pth file)"
"${PIP[@]}" install -q "mmcv==$MMCV_VERSION" "setuptools<81" -r "$REPO/requirements.txt" \
    "torch==$TORCH_VERSION" ${EXTRA_PINS[@]+"${EXTRA_PINS[@]}"}
# The clone goes on the venv's path through a .pth file, not `pip install -e`: an editable
# install leaves only metadata in site-packages, and MMEngine (`read_base` of
# `mmsgformer.configs...` in a config of another folder) looks the package up there and fails;
# without metadata it falls back to the import system, which finds the clone.
"${PIP[@]}" uninstall -q -y mmsgformer 2>/dev/null || true  # an earlier editable install
site_packages=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$REPO" > "$site_packages/mmsgformer-clone.pth"
# Checked only now: importing mmcv needs mmengine from requirements.txt.
if ! has_mmcv_ops; then
    log "ERROR: mmcv is installed without its compiled ops (from mmcv.ops import nms, RoIAlign failed):"
    "$VENV/bin/python" -c "from mmcv.ops import nms, RoIAlign" 2>&1 | tail -3 >&2 || true
    log "If the cached wheel lacks them, delete ${CACHE}/wheels/mmcv-* and re-run (torch must be"
    log "importable while mmcv builds, which this script ensures)."
    exit 1
fi

rm -f "$VENV"/.mmsgformer-setup-*
touch "$STAMP"
log "environment ready: $VENV"
