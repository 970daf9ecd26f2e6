# Mask R-CNN 3x + multi-scale training, SG-Former-B: the 1x size config with the shared
# 3x piece (_base_/maskrcnn_coco_ms_3x.py: pipeline, epochs, lr steps) imported over it.
from mmengine.config import read_base

with read_base():
    from .maskrcnn_sgformer_b_coco import *  # noqa: F401,F403
    from ._base_.maskrcnn_coco_ms_3x import *  # noqa: F401,F403

train_dataloader.dataset.pipeline = train_pipeline
train_cfg.max_epochs = max_epochs
