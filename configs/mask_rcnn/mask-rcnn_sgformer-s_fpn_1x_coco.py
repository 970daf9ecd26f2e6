# Mask R-CNN 1x, SG-Former-S, COCO 2017 instance segmentation (paper: box AP 47.4, mask AP 42.6).
#
# mmdet's COCO instance data, 1x schedule and runtime; what the recipe changes (as in the
# SG-Former / PVT / Swin detection papers):
#   - AdamW, lr 1e-4, weight decay 0.05; no weight decay on normalisation layers nor on the
#     position embedding (`backbone.pos_embed`);
#   - a 1000-iteration linear warm-up (mmdet's 1x: 500);
#   - crash-safe checkpoints (the 3 newest kept) and the divergence guard (docs/reliability.md).
# 8 GPUs x 2 images = batch 16; on other GPU counts use --auto-scale-lr. Mixed precision:
# tools/train.py --amp.
_base_ = [
    '../_base_/models/mask-rcnn_sgformer_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'pos_embed': dict(decay_mult=0.0)}),
)

default_hooks = dict(checkpoint=dict(type='mmsgformer.AtomicCheckpointHook', max_keep_ckpts=3))
custom_hooks = [dict(type='mmsgformer.DivergenceGuardHook')]
