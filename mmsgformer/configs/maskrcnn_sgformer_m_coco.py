# Mask R-CNN 1x, SG-Former-M (the shared recipe is in _base_/maskrcnn_sgformer_coco.py).
_base_ = './_base_/maskrcnn_sgformer_coco.py'

model = dict(
    backbone=dict(
        arch='m',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='checkpoints/sgformer_m_in1k_converted.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
