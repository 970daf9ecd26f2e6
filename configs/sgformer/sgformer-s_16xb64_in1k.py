# SG-Former-S on ImageNet-1k (paper: top-1 83.2).
# Evaluate converted official weights:
#   python tools/test.py configs/sgformer/sgformer-s_16xb64_in1k.py \
#       checkpoints/sgformer_s_in1k_converted.pth
#
# mmpretrain's Swin ImageNet data (evaluation as the official code: short side 256, bicubic,
# PIL, centre crop 224; RandAugment, random erasing for training), its batch-1024 AdamW
# 300-epoch schedule and runtime; what the recipe changes:
#   - no weight decay on the position embedding (`.pos_embed`) either;
#   - no gradient clipping (mmpretrain's Swin-T config: max_norm 5);
#   - crash-safe checkpoints and the divergence guard (docs/reliability.md).
# Batch 1024 = 16 GPUs x 64; on other GPU counts use --auto-scale-lr.
_base_ = [
    '../_base_/models/image-classifier_sgformer.py',
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]

optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.pos_embed': dict(decay_mult=0.0)}))

default_hooks = dict(checkpoint=dict(type='mmsgformer.AtomicCheckpointHook'))
custom_hooks = [dict(type='mmsgformer.DivergenceGuardHook')]
