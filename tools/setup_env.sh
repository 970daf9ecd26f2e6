#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment with the pinned OpenMMLab stack.
#
# Idempotent: a stamp keyed by this script and requirements.txt makes a re-run a no-op.
# The slow part, compiling mmcv's ops (~10 min on 2 cores), is cached as a wheel outside the
# clone in $MMSGFORMER_CACHE (default ~/.cache/mmsgformer), keyed by mmcv, torch and Python
# versions, so fresh clones (CI) reuse it. Beside the wheel, `built-against` records the torch
# it was compiled with; a cached wheel is used only if that is the venv's torch and its ops load.
#
# Environment variables:
#   MMSGFORMER_VENV   where the virtual environment lives (default: <repo>/.venv)
#   MMSGFORMER_CACHE  where the compiled mmcv wheel is cached (default: ~/.cache/mmsgformer)
#   MMSGFORMER_TORCH  torch version: 2.14.1 (default, the pinned one) or 2.1.2 (the oldest
#                     supported; `make test-torch21` builds such an environment beside .venv)
#   PYTHON            interpreter used to create the venv (default: python3.11 or python3)
#
# Sourcing the script defines its functions without running it (tests/test_setup_env.py).
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

PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# Up to date when stamped and its mmsgformer is this clone's (a venv outside the clone, like the
# torch 2.1 one, may have been set up from another clone; checked from / so the cwd does not count).
installed_here() {
    (cd / && "$VENV/bin/python" -c "import os, sys, mmsgformer, mmdet, mmseg, mmpretrain
sys.exit(os.path.realpath(mmsgformer.__file__) != os.path.realpath(sys.argv[1]))" \
        "$REPO/mmsgformer/__init__.py") 2>/dev/null
}

clone_on_path() {  # the .pth file written by main names this clone
    local site
    site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
        2>/dev/null) && [ "$(cat "$site/mmsgformer-clone.pth" 2>/dev/null)" = "$REPO" ]
}

has_mmcv_ops() {  # importing mmcv needs mmengine (requirements.txt)
    "$VENV/bin/python" -c "from mmcv.ops import nms, RoIAlign" 2>/dev/null
}

# The torch that a compiled extension must match: version and the commit it was built from.
torch_build() {
    "$VENV/bin/python" -c "import torch; print(torch.__version__, torch.version.git_version)"
}

# Builds a wheel of the requirement $1 into the folder $2, compiling against the venv's torch.
# pip's cache is bypassed (--no-cache-dir): pip keys the wheels it builds by the source archive
# alone, so a wheel compiled against one torch would be handed back for another.
build_wheel() {
    local requirement=$1 out_dir=$2 cxx_dir
    cxx_dir=$(mktemp -d)
    cat > "$cxx_dir/cxx" <<WRAP
#!/usr/bin/env bash
args=()
for a in "\$@"; do [ "\$a" = "-std=c++17" ] && a="-std=$CXX_STD"; args+=("\$a"); done
exec g++ "\${args[@]}"
WRAP
    chmod +x "$cxx_dir/cxx"
    PATH="$VENV/bin:$PATH" CXX="$cxx_dir/cxx" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} \
        "${PIP[@]}" wheel --no-cache-dir --no-build-isolation --no-deps -w "$out_dir" \
        "$requirement"
    rm -rf "$cxx_dir"
}

# Why the cached wheel in $1 cannot be used with the venv's torch (prints nothing if it can).
cached_wheel_mismatch() {
    local wheel_dir=$1 recorded
    recorded=$(cat "$wheel_dir/built-against" 2>/dev/null || true)
    if [ -n "$recorded" ] && [ "$recorded" != "$(torch_build)" ]; then
        echo "it was built against torch $recorded, the venv has $(torch_build)"
    fi
}

# Installs mmcv with its compiled ops: from the cache when the cached wheel fits the venv's
# torch, else built (and cached) anew.
install_mmcv() {
    local py_tag wheel_dir reason
    py_tag=$("$VENV/bin/python" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
    wheel_dir=$CACHE/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$py_tag-$(uname -m)
    if ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
        reason=$(cached_wheel_mismatch "$wheel_dir")
        if [ -z "$reason" ]; then
            log "installing mmcv from $wheel_dir"
            "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel_dir"/mmcv-*.whl
            if has_mmcv_ops; then
                torch_build > "$wheel_dir/built-against"
                return
            fi
            reason="its ops do not load against torch $(torch_build)"
        fi
        log "cached mmcv wheel in $wheel_dir is not usable ($reason); rebuilding it"
        rm -rf "$wheel_dir"
    fi
    log "building mmcv $MMCV_VERSION with ops against torch $TORCH_VERSION (about 10 minutes on 2 cores)"
    local build_dir
    build_dir=$(mktemp -d)
    build_wheel "mmcv==$MMCV_VERSION" "$build_dir"
    "${PIP[@]}" install -q --no-deps --force-reinstall "$build_dir"/mmcv-*.whl
    if ! has_mmcv_ops; then
        log "ERROR: mmcv was built but its compiled ops do not load (from mmcv.ops import nms, RoIAlign):"
        "$VENV/bin/python" -c "from mmcv.ops import nms, RoIAlign" 2>&1 | tail -3 >&2 || true
        log "torch must be importable while mmcv builds (this script installs it first); see README Install."
        rm -rf "$build_dir"
        exit 1
    fi
    mkdir -p "$wheel_dir"
    mv "$build_dir"/mmcv-*.whl "$wheel_dir/"
    torch_build > "$wheel_dir/built-against"
    rm -rf "$build_dir"
}

main() {
    local stamp_key stamp site_packages
    stamp_key=$( (cat "${BASH_SOURCE[0]}" "$REPO/requirements.txt" "$REPO/pyproject.toml";
                  echo "$TORCH_VERSION") | sha256sum | cut -c1-16)
    stamp=$VENV/.mmsgformer-setup-$stamp_key
    if [ -f "$stamp" ] && installed_here && clone_on_path; then
        return
    fi

    if [ ! -x "$VENV/bin/python" ]; then
        log "creating virtual environment at $VENV"
        "$PYTHON" -m venv "$VENV"
    fi

    log "installing build tools and torch $TORCH_VERSION / torchvision $TORCHVISION_VERSION"
    "${PIP[@]}" install -q --upgrade "pip<26.2"
    # setuptools<81: mmcv's build and mmengine at run time import pkg_resources. It is repeated
    # in every install below because torch's own requirements would otherwise upgrade it.
    "${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
        "setuptools<81" wheel ninja ${EXTRA_PINS[@]+"${EXTRA_PINS[@]}"}

    # mmcv is no pip requirement of mmdet, mmsegmentation or mmpretrain; it comes after them
    # because importing it (the check of its ops) needs mmengine.
    log "installing requirements.txt; mmsgformer from this clone (a .pth file)"
    "${PIP[@]}" install -q "setuptools<81" -r "$REPO/requirements.txt" \
        "torch==$TORCH_VERSION" ${EXTRA_PINS[@]+"${EXTRA_PINS[@]}"}
    if ! has_mmcv_ops; then
        install_mmcv
    fi

    # The clone goes on the venv's path through a .pth file, not `pip install -e`: an editable
    # install leaves only metadata in site-packages, and MMEngine (`read_base` of
    # `mmsgformer.configs...` in a config of another folder) looks the package up there and
    # fails; without metadata it falls back to the import system, which finds the clone.
    "${PIP[@]}" uninstall -q -y mmsgformer 2>/dev/null || true  # an earlier editable install
    site_packages=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    echo "$REPO" > "$site_packages/mmsgformer-clone.pth"

    rm -f "$VENV"/.mmsgformer-setup-*
    touch "$stamp"
    log "environment ready: $VENV"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main
fi
