# Shared 3x piece of configs/maskrcnn_sgformer_{s,m,b}_coco_3x.py: 36 epochs with
# multi-scale training, as Swin's Mask R-CNN 3x configs (the DETR / Sparse R-CNN
# augmentation: random flip, then either a random resize of the short side to 480..800, or
# a resize to 400..600, a random 384x600 crop and a resize to 480..800; long side <= 1333).
#
# MMEngine forbids the same key in two bases of one config, and every key here would clash
# with the 1x size file it is combined with, so this piece exports `ms3x_*` values and each
# 3x file plugs them in (3 lines) on top of its 1x size file.
_ms_scales = [(short, 1333) for short in range(480, 801, 32)]

ms3x_train_pipeline = [
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
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=_ms_scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]

ms3x_max_epochs = 36
ms3x_param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=36,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]
