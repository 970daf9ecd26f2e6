# CPU demo: Mask R-CNN with a tiny SG-Former, trained from scratch on the generated
# "coloured shapes" COCO dataset (tools/dataset_generators/generate_coco_shapes.py).
# Sized to train on 2 CPU cores in about 10 minutes; `bash tools/run_demo.sh` runs it all.
#
# Same recipe family as the COCO configs (it inherits _base_/maskrcnn_sgformer_coco.py:
# AdamW, no decay on norms / pos_embed), scaled down: small images (160x128, no resizing),
# a small backbone without pretraining, 64-channel FPN and heads, fewer RPN/RoI samples and
# proposals, a higher learning rate, and evaluation only at the end.
# Its text twin configs/demo/mask-rcnn_sgformer-tiny_fpn_shapes.py states the same changes on
# purpose: neither config form can inherit the other (tests/test_config_pairs.py holds them equal).
from mmengine.config import read_base

with read_base():
    from .._base_.maskrcnn_sgformer_coco import *  # noqa: F401,F403
    from .._base_.sgformer_tiny import tiny_arch

data_root = 'data/coco_shapes/'
metainfo = dict(
    classes=('circle', 'square', 'triangle'), palette=[(220, 20, 60), (0, 160, 80), (30, 80, 230)]
)
num_classes = 3
img_scale = (160, 128)  # (w, h) of the generated images
channels = 64  # FPN / head width

# ---------------------------------------------------------------- model
model.backbone.update(
    arch=tiny_arch,  # replaces arch='s'
    drop_path_rate=0.0,
    init_cfg=None,
)  # trained from scratch: no ImageNet checkpoint needed
model.neck.update(in_channels=[32, 64, 128, 256], out_channels=channels, num_outs=5)
model.rpn_head.update(
    in_channels=channels,
    feat_channels=channels,
    # anchors 24/48/96/192/384 px for objects of 20..56 px
    anchor_generator=dict(scales=[6]),
)
model.roi_head.update(
    bbox_roi_extractor=dict(out_channels=channels),
    bbox_head=dict(in_channels=channels, fc_out_channels=128, num_classes=num_classes),
    mask_roi_extractor=dict(out_channels=channels),
    mask_head=dict(
        num_convs=1, in_channels=channels, conv_out_channels=32, num_classes=num_classes
    ),
)
model.train_cfg.update(
    rpn=dict(sampler=dict(num=64)),
    rpn_proposal=dict(nms_pre=500, max_per_img=100),
    rcnn=dict(sampler=dict(num=64, pos_fraction=0.5)),
)
model.test_cfg.update(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20))

# ---------------------------------------------------------------- data
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
__shapes = dict(data_root=data_root, metainfo=metainfo)  # (`__`: a helper, not in the config)
train_dataloader.update(batch_size=4, num_workers=1)
train_dataloader.dataset.update(
    __shapes,
    ann_file='annotations/instances_train.json',
    data_prefix=dict(img='train/'),
    filter_cfg=dict(min_size=8),
    pipeline=train_pipeline,
)
val_dataloader.update(batch_size=4, num_workers=1)
val_dataloader.dataset.update(
    __shapes,
    ann_file='annotations/instances_val.json',
    data_prefix=dict(img='val/'),
    pipeline=test_pipeline,
)
test_dataloader = val_dataloader
val_evaluator.ann_file = data_root + 'annotations/instances_val.json'
test_evaluator = val_evaluator

# ------------------------------------------------ schedule: evaluate once, at the end
max_epochs = 5
train_cfg.update(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper.optimizer.lr = 1.5e-3
optim_wrapper.clip_grad = dict(max_norm=10.0)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=200),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs,
        eta_min=1e-5,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True,
    ),
]
auto_scale_lr.base_batch_size = 4

default_hooks.logger.interval = 25
default_hooks.checkpoint.update(interval=max_epochs, max_keep_ckpts=1)
log_processor.window_size = 25
randomness = dict(seed=0)
