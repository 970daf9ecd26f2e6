# Shared 3x piece of maskrcnn_sgformer_{s,m,b}_coco_3x.py: 36 epochs with multi-scale training,
# as Swin's Mask R-CNN 3x configs (the DETR / Sparse R-CNN augmentation: random flip, then
# either a random resize of the short side to 480..800, or a resize to 400..600, a random
# 384x600 crop and a resize to 480..800; long side <= 1333).
#
# A 3x config imports it after its 1x size config, so these values replace the 1x ones, and
# then points the two places that were computed from them in the 1x recipe at them:
#     train_dataloader.dataset.pipeline = train_pipeline
#     train_cfg.max_epochs = max_epochs
# The text configs state the same in configs/mask_rcnn/mask-rcnn_sgformer-s_fpn_ms-crop-3x_coco.py
# on purpose: neither config form can inherit the other (tests/test_config_pairs.py).
_ms_scales = [(short, 1333) for short in range(480, 801, 32)]

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=_ms_scales, keep_ratio=True)],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(400, 1333), (500, 1333), (600, 1333)],
                    keep_ratio=True,
                ),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True,
                ),
                dict(type='RandomChoiceResize', scales=_ms_scales, keep_ratio=True),
            ],
        ],
    ),
    dict(type='PackDetInputs'),
]

max_epochs = 36
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(
        type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1
    ),
]
