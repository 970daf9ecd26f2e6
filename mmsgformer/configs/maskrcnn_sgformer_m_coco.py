# Mask R-CNN 1x, SG-Former-M (the shared recipe is in _base_/maskrcnn_sgformer_coco.py).
from mmengine.config import read_base

with read_base():
    from ._base_.maskrcnn_sgformer_coco import *  # noqa: F401,F403

model.backbone.update(arch='m', drop_path_rate=0.3)
model.backbone.init_cfg.checkpoint = 'checkpoints/sgformer_m_in1k_converted.pth'
model.neck.in_channels = [64, 128, 256, 512]
