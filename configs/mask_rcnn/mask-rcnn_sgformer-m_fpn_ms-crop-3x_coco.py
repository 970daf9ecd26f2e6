# Mask R-CNN 3x + multi-scale training, SG-Former-M; the S 3x recipe with the M size
# (as in mask-rcnn_sgformer-m_fpn_1x_coco.py).
_base_ = './mask-rcnn_sgformer-s_fpn_ms-crop-3x_coco.py'

checkpoint_file = 'checkpoints/sgformer_m_in1k_converted.pth'
model = dict(backbone=dict(arch='m', drop_path_rate=0.3, init_cfg=dict(checkpoint=checkpoint_file)))
