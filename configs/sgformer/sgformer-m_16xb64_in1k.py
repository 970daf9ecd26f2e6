# SG-Former-M on ImageNet-1k (paper: top-1 84.1).
# Evaluate converted official weights:
#   python tools/test.py configs/sgformer/sgformer-m_16xb64_in1k.py \
#       checkpoints/sgformer_m_in1k_converted.pth
# The SG-Former-S recipe with the M backbone (same last-stage width, so the head is unchanged).
_base_ = './sgformer-s_16xb64_in1k.py'

model = dict(backbone=dict(arch='m', drop_path_rate=0.2))
