# SG-Former-S on ImageNet-1k (paper: top-1 83.2).
# Evaluate converted official weights:
#   python tools/test.py configs/sgformer_s_in1k.py checkpoints/sgformer_s_in1k_converted.pth
_base_ = './_base_/sgformer_in1k.py'

model = dict(
    backbone=dict(arch='s', drop_path_rate=0.1),
    head=dict(in_channels=512))
