# UperNet + SG-Former-M on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper: 51.2 mIoU single-scale, 52.1 multi-scale + flip (tools/test.py --tta).
# The SG-Former-S recipe with the M backbone (same stage widths, so the heads are unchanged).
_base_ = './upernet_sgformer-s_8xb2-160k_ade20k-512x512.py'

checkpoint_file = 'checkpoints/sgformer_m_in1k_converted.pth'
model = dict(backbone=dict(arch='m', init_cfg=dict(checkpoint=checkpoint_file)))
