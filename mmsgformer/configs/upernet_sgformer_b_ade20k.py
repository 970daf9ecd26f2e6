# UperNet + SG-Former-B on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper: 52.0 mIoU single-scale, 52.7 multi-scale + flip (tools/test.py --tta).
from mmengine.config import read_base

with read_base():
    from ._base_.upernet_sgformer_ade20k import *  # noqa: F401,F403

checkpoint_file = 'checkpoints/sgformer_b_in1k_converted.pth'
model.backbone.update(arch='b', init_cfg=dict(checkpoint=checkpoint_file))
model.decode_head.in_channels = [96, 192, 384, 768]
model.auxiliary_head.in_channels = 384
