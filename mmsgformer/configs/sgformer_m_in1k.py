# SG-Former-M on ImageNet-1k (paper: top-1 84.1).
# Evaluate converted official weights:
#   python tools/test.py configs/sgformer_m_in1k.py checkpoints/sgformer_m_in1k_converted.pth
from mmengine.config import read_base

with read_base():
    from ._base_.sgformer_in1k import *  # noqa: F401,F403

model.backbone.update(arch='m', drop_path_rate=0.2)
model.head.in_channels = 512
