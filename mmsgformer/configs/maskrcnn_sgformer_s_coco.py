# Mask R-CNN 1x, SG-Former-S (the shared recipe is in _base_/maskrcnn_sgformer_coco.py).
from mmengine.config import read_base

with read_base():
    from ._base_.maskrcnn_sgformer_coco import *  # noqa: F401,F403

model.backbone.update(arch='s', drop_path_rate=0.2)
model.backbone.init_cfg.checkpoint = 'checkpoints/sgformer_s_in1k_converted.pth'
model.neck.in_channels = [64, 128, 256, 512]
