# SG-Former-B on ImageNet-1k (paper: top-1 84.7).
# Evaluate converted official weights:
#   python tools/test.py configs/sgformer/sgformer-b_16xb64_in1k.py \
#       checkpoints/sgformer_b_in1k_converted.pth
# The SG-Former-S recipe with the B backbone and the head widened to its last stage.
_base_ = './sgformer-s_16xb64_in1k.py'

model = dict(backbone=dict(arch='b', drop_path_rate=0.4), head=dict(in_channels=768))
