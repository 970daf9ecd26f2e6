# Mask R-CNN 3x + multi-scale training, SG-Former-B; the S 3x recipe with the B size
# (as in mask-rcnn_sgformer-b_fpn_1x_coco.py).
_base_ = './mask-rcnn_sgformer-s_fpn_ms-crop-3x_coco.py'

checkpoint_file = 'checkpoints/sgformer_b_in1k_converted.pth'
model = dict(
    backbone=dict(arch='b', drop_path_rate=0.4, init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[96, 192, 384, 768]),
)
