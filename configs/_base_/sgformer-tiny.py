# The tiny SG-Former of the CPU demos (configs/demo/): every block kind of the paper's
# architecture (hybrid-scale, significance-guided and global attention) at a width and depth
# that trains on 2 CPU cores in minutes. A demo lists this file in its `_base_` and sets
# `model = dict(backbone=dict(arch={{_base_.tiny_arch}}))`; `_delete_` makes the dict replace
# the inherited `arch='s'` instead of merging into it.
tiny_arch = dict(
    _delete_=True,
    embed_dims=[32, 64, 128, 256],
    num_heads=[2, 2, 4, 8],
    depths=[2, 2, 2, 1],
    mlp_ratios=[4, 4, 4, 4],
)
