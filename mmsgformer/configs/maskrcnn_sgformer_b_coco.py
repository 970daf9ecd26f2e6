# Mask R-CNN 1x, SG-Former-B (the shared recipe is in _base_/maskrcnn_sgformer_coco.py).
_base_ = './_base_/maskrcnn_sgformer_coco.py'

model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='checkpoints/sgformer_b_in1k_converted.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
