#!/usr/bin/env bash
# The GPU checks and measurements reported in the README (section "Speed"), in one go:
# the CUDA tests, the summary table (--summary), then benchmark.py in float32 and bfloat16
# autocast, training memory with and without gradient checkpointing, cost growth
# 512x1024 -> 1024x2048, and torch.compile against eager (default mode and CUDA graphs).
#
#   bash tools/analysis_tools/benchmark_gpu.sh OUT_DIR [BASELINE_PREFIX]
#
# BASELINE_PREFIX selects the Swin/PVTv2 implementation: "" for mmdet's (needs mmcv with
# ops), "timm_" for timm's (default; only timm needed). Every step writes OUT_DIR/<step>.json
# and OUT_DIR/<step>.log; a failing step is reported and the others still run. STEP_TIMEOUT
# (seconds, default 1800) bounds each step; REPS (default 5) sets the timed repetitions;
# OFFICIAL=PATH (a clone of github.com/OliverRensu/SG-Former) adds the ours/official row.
set -u
OUT_DIR=${1:?usage: benchmark_gpu.sh OUT_DIR [BASELINE_PREFIX]}
B=${2-timm_}
PYTHON=${PYTHON:-python3}
BENCH="$PYTHON tools/analysis_tools/benchmark.py --device cuda --no-macs --warmup 2 --reps ${REPS:-5}"
mkdir -p "$OUT_DIR"
ALL="sgformer_s sgformer_m sgformer_b ${B}swin_t ${B}swin_s ${B}swin_b ${B}pvtv2_b2 ${B}pvtv2_b3 ${B}pvtv2_b5"
S_ONLY="sgformer_s ${B}swin_t ${B}pvtv2_b2"
failed=0

step() {  # step NAME COMMAND...
    local name=$1; shift
    echo "=== $name: $*"
    local start=$SECONDS
    if timeout "${STEP_TIMEOUT:-1800}" "$@" > "$OUT_DIR/$name.log" 2>&1; then
        echo "    ok in $((SECONDS - start)) s"
    else
        echo "    FAILED (exit $?) in $((SECONDS - start)) s; last lines:"; failed=1
    fi
    tail -n 25 "$OUT_DIR/$name.log"
}

step cuda_tests $PYTHON -m pytest -q tests/test_cuda.py
# the summary's rows at GPU sizes (ours/official only with OFFICIAL=PATH to the official code)
step summary $BENCH --summary --summary-baseline ${B}swin_t \
    --summary-sizes 224x224@32 800x1333@2 800x1333@2 ${OFFICIAL:+--official "$OFFICIAL"} \
    --out "$OUT_DIR/summary.json"
step fp32 $BENCH --models $ALL --sizes 224x224@32 800x1333@2 --iters 3 --out "$OUT_DIR/fp32.json"
step bf16 $BENCH --models $ALL --sizes 224x224@32 800x1333@2 --iters 3 --dtype bfloat16 \
    --out "$OUT_DIR/bf16.json"
step with_cp $BENCH --models $S_ONLY --sizes 800x1333@2 --modes train --with-cp all \
    --out "$OUT_DIR/with_cp.json"
step compile $BENCH --models sgformer_s ${B}swin_t --sizes 224x224@32 800x1333@2 --modes infer \
    --compile-vs-eager --out "$OUT_DIR/compile.json"
step compile_cudagraphs $BENCH --models sgformer_s ${B}swin_t --sizes 224x224@32 --modes infer \
    --compile-vs-eager --compile-mode reduce-overhead --out "$OUT_DIR/compile_cudagraphs.json"
step growth $BENCH --models $ALL --sizes 512x1024@1 --growth --modes infer train \
    --out "$OUT_DIR/growth.json"
exit $failed
