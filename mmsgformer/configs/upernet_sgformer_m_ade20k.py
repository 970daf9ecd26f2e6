# UperNet + SG-Former-M on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper: 51.2 mIoU single-scale, 52.1 multi-scale + flip (tools/test.py --tta).
from mmengine.config import read_base

with read_base():
    from ._base_.upernet_sgformer_ade20k import *  # noqa: F401,F403

checkpoint_file = 'checkpoints/sgformer_m_in1k_converted.pth'
model.backbone.update(arch='m', init_cfg=dict(checkpoint=checkpoint_file))
