# Mask R-CNN 1x, SG-Former-B; the S recipe with the B size.
_base_ = './mask-rcnn_sgformer-s_fpn_1x_coco.py'

checkpoint_file = 'checkpoints/sgformer_b_in1k_converted.pth'
model = dict(
    backbone=dict(arch='b', drop_path_rate=0.4, init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[96, 192, 384, 768]),
)
