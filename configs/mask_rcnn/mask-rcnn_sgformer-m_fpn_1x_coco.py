# Mask R-CNN 1x, SG-Former-M (paper: box AP 48.2, mask AP 43.6); the S recipe with the M size.
_base_ = './mask-rcnn_sgformer-s_fpn_1x_coco.py'

checkpoint_file = 'checkpoints/sgformer_m_in1k_converted.pth'
model = dict(backbone=dict(arch='m', drop_path_rate=0.3, init_cfg=dict(checkpoint=checkpoint_file)))
