# SG-Former-S on ImageNet-1k (paper: top-1 83.2).
# Evaluate converted official weights:
#   python tools/test.py configs/sgformer_s_in1k.py checkpoints/sgformer_s_in1k_converted.pth
from mmengine.config import read_base

with read_base():
    from ._base_.sgformer_in1k import *  # noqa: F401,F403

model.backbone.update(arch='s', drop_path_rate=0.1)
model.head.in_channels = 512
