# UperNet + SG-Former-S on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper: 49.9 mIoU single-scale, 51.5 multi-scale + flip (tools/test.py --tta).
# The shared base is the S model; this file only names it.
from mmengine.config import read_base

with read_base():
    from ._base_.upernet_sgformer_ade20k import *  # noqa: F401,F403
