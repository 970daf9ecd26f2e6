# Mask R-CNN + FPN with an SG-Former backbone on COCO 2017 instance segmentation, 1x schedule.
#
# Shared by configs/maskrcnn_sgformer_{s,m,b}_coco.py, which state only what differs per
# size (arch, FPN in_channels, drop path rate, pretrained checkpoint). The model, data
# pipeline, schedule and runtime come from mmdet's own bases (the `mmdet::` prefix reads
# them from the installed mmdet package).
#
# Recipe (as in the SG-Former / PVT / Swin detection papers):
#   - AdamW, lr 1e-4, weight decay 0.05, betas (0.9, 0.999); no weight decay on
#     normalisation layers nor on the position embedding (`backbone.pos_embed`).
#     Transformers are trained with AdamW; SGD with lr 0.02 (the ResNet recipe) is unstable
#     for them, and decaying norm scales / position embeddings only hurts.
#   - 8 GPUs x 2 images = batch 16 (auto_scale_lr.base_batch_size=16; on other GPU counts
#     use --auto-scale-lr for the linear scaling rule).
#   - 12 epochs, 1000-iteration linear warm-up, lr x0.1 at epochs 8 and 11.
#   - Single-scale 1333x800 training (the 3x configs add multi-scale training).
#   - Mixed precision: `tools/train.py --amp` (AmpOptimWrapper, dynamic loss scale).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmsgformer'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmsgformer.SGFormer',
        arch='s',
        in_channels=3,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False,
        # Converted ImageNet-1k weights (tools/model_converters/sgformer2mm.py); the loader
        # raises FileNotFoundError if the file is missing, it never downloads.
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/sgformer_s_in1k_converted.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        custom_keys={'pos_embed': dict(decay_mult=0.)}))

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]

# 8 GPUs x 2 images
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)

default_hooks = dict(checkpoint=dict(max_keep_ckpts=3))
