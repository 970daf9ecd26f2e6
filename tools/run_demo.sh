#!/usr/bin/env bash
# End-to-end CPU demo: environment -> data -> training -> COCO evaluation -> picture.
#
#   bash tools/run_demo.sh            (or: make demo)
#
# 1. sets up the virtual environment if needed (tools/setup_env.sh is a no-op when done),
# 2. generates the coloured-shapes COCO dataset in data/coco_shapes/ if it is missing,
# 3. trains configs/demo/mask-rcnn_sgformer-tiny_fpn_shapes.py (Mask R-CNN, tiny SG-Former,
#    about 10 minutes on 2 CPU cores),
# 4. evaluates the checkpoint on the held-out split (CocoMetric bbox + segm mAP table),
# 5. draws the predictions on a validation image: work_dirs/.../demo_prediction.png.
#
# Environment: MMSGFORMER_VENV (default <repo>/.venv), DEMO_WORK_DIR (default
# work_dirs/mask-rcnn_sgformer-tiny_fpn_shapes). Extra arguments go to tools/train.py, e.g.
# `bash tools/run_demo.sh --cfg-options train_cfg.max_epochs=2` for a quicker look.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMSGFORMER_VENV:-$REPO/.venv}
CONFIG=configs/demo/mask-rcnn_sgformer-tiny_fpn_shapes.py
DATA=data/coco_shapes
WORK_DIR=${DEMO_WORK_DIR:-work_dirs/mask-rcnn_sgformer-tiny_fpn_shapes}

# One compute thread per process: on a 2-core machine the data loader worker gets the other
# core, and with any other load OpenMP's 2-thread synchronisation made iterations >10x slower
# in our measurements. Export OMP_NUM_THREADS=2 to override on an idle machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

cd "$REPO"
echo "==> [1/5] environment ($VENV)"
bash "$REPO/tools/setup_env.sh"
PY="$VENV/bin/python"

echo "==> [2/5] dataset ($DATA)"
if [ ! -f "$DATA/annotations/instances_val.json" ]; then
    "$PY" tools/dataset_generators/generate_coco_shapes.py "$DATA" \
        --num-train 600 --num-val 120 --seed 0
else
    echo "    found, not regenerated"
fi

echo "==> [3/5] training $CONFIG"
start=$(date +%s)
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
train_s=$(( $(date +%s) - start ))
CKPT=$(cat "$WORK_DIR/last_checkpoint")

echo "==> [4/5] evaluating $CKPT on the held-out split"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR"

echo "==> [5/5] drawing predictions"
"$PY" tools/demo/image_demo.py "$DATA/val" "$CONFIG" "$CKPT" --num-images 6 \
    --out-file "$WORK_DIR/demo_prediction.png" --device cpu

echo "==> done: training took ${train_s}s; checkpoint $CKPT;" \
    "picture $WORK_DIR/demo_prediction.png"
