# Mask R-CNN 1x, SG-Former-B (the shared recipe is in _base_/maskrcnn_sgformer_coco.py).
from mmengine.config import read_base

with read_base():
    from ._base_.maskrcnn_sgformer_coco import *  # noqa: F401,F403

model.backbone.update(arch='b', drop_path_rate=0.4)
model.backbone.init_cfg.checkpoint = 'checkpoints/sgformer_b_in1k_converted.pth'
model.neck.in_channels = [96, 192, 384, 768]
