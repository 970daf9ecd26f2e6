# Mask R-CNN 1x, SG-Former-B; the S recipe with the B size.
_base_ = './mask-rcnn_sgformer-s_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.4,
        init_cfg=dict(checkpoint='checkpoints/sgformer_b_in1k_converted.pth'),
    ),
    neck=dict(in_channels=[96, 192, 384, 768]),
)
