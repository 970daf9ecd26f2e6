# UperNet + SG-Former-B on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper: 52.0 mIoU single-scale, 52.7 multi-scale + flip (tools/test.py --tta).
_base_ = ['./_base_/upernet_sgformer_ade20k.py']

model = dict(
    backbone=dict(
        arch='b',
        init_cfg=dict(checkpoint='checkpoints/sgformer_b_in1k_converted.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
