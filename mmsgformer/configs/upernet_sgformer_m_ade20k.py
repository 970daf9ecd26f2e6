# UperNet + SG-Former-M on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper: 51.2 mIoU single-scale, 52.1 multi-scale + flip (tools/test.py --tta).
_base_ = ['./_base_/upernet_sgformer_ade20k.py']

model = dict(
    backbone=dict(
        arch='m',
        init_cfg=dict(checkpoint='checkpoints/sgformer_m_in1k_converted.pth')))
