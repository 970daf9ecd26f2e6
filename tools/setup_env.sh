#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment with one of the two pinned OpenMMLab
# stacks: requirements/onedl.txt (the maintained OneDL fork) or requirements/upstream.txt (the
# last upstream OpenMMLab releases), beside requirements.txt.
#
# Idempotent: a stamp keyed by this script, the requirement files and the torch makes a re-run a
# no-op. The slow part, compiling mmcv's ops (~10 min on 2 cores), is cached as a wheel outside
# the clone in $MMSGFORMER_CACHE (default ~/.cache/mmsgformer), keyed by the mmcv distribution,
# its version, torch and Python, so fresh clones (CI) reuse it. Beside the wheel, `built-against`
# records the torch it was compiled with; a cached wheel is used only if that is the venv's torch
# and its ops load.
#
# Environment variables:
#   MMSGFORMER_VENV   where the virtual environment lives (default: <repo>/.venv)
#   MMSGFORMER_CACHE  where the compiled mmcv wheel is cached (default: ~/.cache/mmsgformer)
#   MMSGFORMER_STACK  onedl (default) or upstream: which requirements/<stack>.txt to install;
#                     switching an environment removes the other stack's packages first
#   MMSGFORMER_TORCH  torch version: 2.14.1 (default, the pinned one) or 2.1.2 (the oldest
#                     supported, upstream stack only; `make test-torch21` builds such an
#                     environment in the cache)
#   PYTHON            interpreter used to create the venv (default: python3.11 or python3)
#
# Sourcing the script defines its functions without running it (tests/test_setup_env.py).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMSGFORMER_VENV:-$REPO/.venv}
CACHE=${MMSGFORMER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmsgformer}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

TORCH_VERSION=${MMSGFORMER_TORCH:-2.14.1}
STACK=${MMSGFORMER_STACK:-onedl}
STACKS=(onedl upstream)

log() { echo "[setup_env] $*" >&2; }

if [ ! -f "$REPO/requirements/$STACK.txt" ]; then
    log "ERROR: MMSGFORMER_STACK=$STACK is not one of the stacks: ${STACKS[*]} (requirements/<stack>.txt)"
    exit 1
fi
STACK_FILE=$REPO/requirements/$STACK.txt

# The requirement lines of a stack file (comments and blank lines dropped).
stack_requirements() { sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$1" | grep -v '^$'; }
# The OpenMMLab distributions a stack file names ("onedl-mmdetection==3.5.1" -> onedl-mmdetection).
stack_distributions() {
    stack_requirements "$1" | sed -E 's/[<>=!~;[ ].*//' | grep -E '^(onedl-)?(mm|openmim|mim)'
}

# The stack's mmcv pin ("mmcv==2.1.0", "onedl-mmcv==2.3.6"): built here, not installed by pip.
MMCV_REQUIREMENT=$(stack_requirements "$STACK_FILE" | grep -E '^(onedl-)?mmcv==')
MMCV_DIST=${MMCV_REQUIREMENT%%==*}
MMCV_VERSION=${MMCV_REQUIREMENT##*==}
MMCV_WHEEL_PREFIX=${MMCV_DIST//-/_}

# torch 2.1 was built against numpy 1; torch 2.14's headers need C++20, while mmcv 2.1.0's
# setup.py forces -std=c++17 (torch 2.1's headers build with it as is).
case "$TORCH_VERSION" in
    2.14.1) TORCHVISION_VERSION=0.29.1; EXTRA_PINS=(); CXX_STD=c++20 ;;
    2.1.2)  TORCHVISION_VERSION=0.16.2; EXTRA_PINS=("numpy<2"); CXX_STD=c++17 ;;
    *) log "ERROR: MMSGFORMER_TORCH=$TORCH_VERSION is not one of the tested versions 2.14.1, 2.1.2"
       exit 1 ;;
esac
# onedl-mmsegmentation requires numpy > 2, which torch 2.1 was not built for.
if [ "$STACK" = onedl ] && [ "$TORCH_VERSION" = 2.1.2 ]; then
    log "ERROR: the onedl stack needs numpy 2, torch 2.1.2 numpy 1; use MMSGFORMER_STACK=upstream with torch 2.1.2"
    exit 1
fi

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

installed_distributions() {  # those of the distribution names $@ installed in the venv
    "$VENV/bin/python" - "$@" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, distribution

for name in sys.argv[1:]:
    try:
        distribution(name)
        print(name)
    except PackageNotFoundError:
        pass
PY
}

# The installed packages of the stacks other than $STACK.
other_stacks_installed() {
    local other
    for other in "${STACKS[@]}"; do
        [ "$other" = "$STACK" ] && continue
        installed_distributions $(stack_distributions "$REPO/requirements/$other.txt")
    done
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
# The compiler wrapper swaps in the C++ standard torch's headers need, and ends every command
# with -g0: Python's build flags ask for debug information, which for torch's headers doubles
# the compile time and makes a 30 MB wheel, with the same machine code.
build_wheel() {
    local requirement=$1 out_dir=$2 cxx_dir
    cxx_dir=$(mktemp -d)
    cat > "$cxx_dir/cxx" <<WRAP
#!/usr/bin/env bash
args=()
for a in "\$@"; do [ "\$a" = "-std=c++17" ] && a="-std=$CXX_STD"; args+=("\$a"); done
exec g++ "\${args[@]}" -g0
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
    wheel_dir=$CACHE/wheels/$MMCV_DIST-$MMCV_VERSION-torch$TORCH_VERSION-$py_tag-$(uname -m)
    if ls "$wheel_dir/$MMCV_WHEEL_PREFIX"-*.whl >/dev/null 2>&1; then
        reason=$(cached_wheel_mismatch "$wheel_dir")
        if [ -z "$reason" ]; then
            log "installing $MMCV_DIST from $wheel_dir"
            "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel_dir/$MMCV_WHEEL_PREFIX"-*.whl
            if has_mmcv_ops; then
                torch_build > "$wheel_dir/built-against"
                return
            fi
            reason="its ops do not load against torch $(torch_build)"
        fi
        log "cached mmcv wheel in $wheel_dir is not usable ($reason); rebuilding it"
        rm -rf "$wheel_dir"
    fi
    log "building $MMCV_REQUIREMENT with ops against torch $TORCH_VERSION (about 10 minutes on 2 cores)"
    local build_dir
    build_dir=$(mktemp -d)
    build_wheel "$MMCV_REQUIREMENT" "$build_dir"
    "${PIP[@]}" install -q --no-deps --force-reinstall "$build_dir/$MMCV_WHEEL_PREFIX"-*.whl
    if ! has_mmcv_ops; then
        log "ERROR: mmcv was built but its compiled ops do not load (from mmcv.ops import nms, RoIAlign):"
        "$VENV/bin/python" -c "from mmcv.ops import nms, RoIAlign" 2>&1 | tail -3 >&2 || true
        log "torch must be importable while mmcv builds (this script installs it first); see README Install."
        rm -rf "$build_dir"
        exit 1
    fi
    mkdir -p "$wheel_dir"
    mv "$build_dir/$MMCV_WHEEL_PREFIX"-*.whl "$wheel_dir/"
    torch_build > "$wheel_dir/built-against"
    rm -rf "$build_dir"
}

main() {
    local stamp_key stamp site_packages
    stamp_key=$( (cat "${BASH_SOURCE[0]}" "$REPO/requirements.txt" "$STACK_FILE" \
                      "$REPO/pyproject.toml"; echo "$STACK $TORCH_VERSION") | sha256sum | cut -c1-16)
    stamp=$VENV/.mmsgformer-setup-$stamp_key
    if [ -f "$stamp" ] && installed_here && clone_on_path; then
        return
    fi

    if [ ! -x "$VENV/bin/python" ]; then
        log "creating virtual environment at $VENV"
        "$PYTHON" -m venv "$VENV"
    fi

    # One stack per environment: both install the import names mmcv, mmengine, mmdet, ..., so a
    # package of one would overwrite files of the other. Uninstalling one removes files the other
    # shares, so switching removes both stacks' packages before this one is installed.
    local others
    others=$(other_stacks_installed)
    if [ -n "$others" ]; then
        log "removing the packages of the other stack:" $others
        "${PIP[@]}" uninstall -q -y $others $(installed_distributions $(stack_distributions "$STACK_FILE"))
    fi

    log "installing build tools and torch $TORCH_VERSION / torchvision $TORCHVISION_VERSION"
    "${PIP[@]}" install -q --upgrade "pip<26.2"
    # The stack file is a constraint of every install (e.g. the upstream stack's setuptools<81,
    # which torch's own requirements would otherwise upgrade).
    "${PIP[@]}" install -q -c "$STACK_FILE" "torch==$TORCH_VERSION" \
        "torchvision==$TORCHVISION_VERSION" setuptools wheel ninja ${EXTRA_PINS[@]+"${EXTRA_PINS[@]}"}

    # mmcv is no pip requirement of mmdet, mmsegmentation or mmpretrain; it comes after them
    # because importing it (the check of its ops) needs mmengine.
    log "installing requirements.txt and the $STACK stack; mmsgformer from this clone (a .pth file)"
    "${PIP[@]}" install -q -c "$STACK_FILE" -r "$REPO/requirements.txt" \
        -r <(stack_requirements "$STACK_FILE" | grep -v -x -F "$MMCV_REQUIREMENT") \
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
    log "environment ready: $VENV ($STACK stack, torch $TORCH_VERSION)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main
fi
