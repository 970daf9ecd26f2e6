# UperNet + SG-Former-B on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper: 52.0 mIoU single-scale, 52.7 multi-scale + flip (tools/test.py --tta).
# The SG-Former-S recipe with the B backbone and the heads widened to its stages.
_base_ = './upernet_sgformer-s_8xb2-160k_ade20k-512x512.py'

checkpoint_file = 'checkpoints/sgformer_b_in1k_converted.pth'
model = dict(
    backbone=dict(arch='b', init_cfg=dict(checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384),
)
