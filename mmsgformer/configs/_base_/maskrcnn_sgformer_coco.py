# Mask R-CNN + FPN with an SG-Former backbone on COCO 2017 instance segmentation, 1x schedule.
#
# Shared by maskrcnn_sgformer_{s,m,b}_coco.py, which state only what differs per size (arch,
# FPN in_channels, drop path rate, pretrained checkpoint); it is itself the S model.
#
# A pure-Python config (MMEngine's `read_base` style), so that downstream projects can inherit
# it from the installed package (`from mmsgformer.configs.maskrcnn_sgformer_s_coco import *`).
# Pure-Python configs cannot inherit mmdet's text configs (`mmdet::...`), so the whole recipe
# is spelled out here (the runtime in default_runtime.py); its values are those of mmdet 3.3.0's
# Swin-T Mask R-CNN 1x (`mask-rcnn_r50_fpn.py`, `coco_instance.py`, `schedule_1x.py`,
# `default_runtime.py`, `mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py`) with our changes below
# (tests/test_detection_configs.py compares them).
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
#
# Types are registry names (strings); `default_scope='mmdet'` resolves the plain ones and
# `mmsgformer.` names ours (resolving one imports mmsgformer, which registers our classes).
from mmengine.config import read_base

with read_base():  # custom_imports (mmsgformer), hooks, environment, logging
    from .default_runtime import *  # noqa: F401,F403

default_scope = 'mmdet'

# ---------------------------------------------------------------- model
# What the RPN's and the RoI head's assigners and samplers, and the box and mask RoI
# extractors share (`__` names are this file's helpers: MMEngine leaves them out of the config).
__max_iou = dict(type='MaxIoUAssigner', match_low_quality=True, ignore_iof_thr=-1)
__random = dict(type='RandomSampler', neg_pos_ub=-1)
__roi_extractor = dict(type='SingleRoIExtractor', out_channels=256, featmap_strides=[4, 8, 16, 32])
model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=True,
        pad_size_divisor=32,
    ),
    backbone=dict(
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
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/sgformer_s_in1k_converted.pth'),
    ),
    neck=dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=256, num_outs=5),
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]
        ),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[1.0, 1.0, 1.0, 1.0],
        ),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0),
    ),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            __roi_extractor, roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0)
        ),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0.0, 0.0, 0.0, 0.0],
                target_stds=[0.1, 0.1, 0.2, 0.2],
            ),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0),
        ),
        mask_roi_extractor=dict(
            __roi_extractor, roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0)
        ),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=80,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0),
        ),
    ),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(__max_iou, pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3),
            sampler=dict(__random, num=256, pos_fraction=0.5, add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False,
        ),
        rpn_proposal=dict(
            nms_pre=2000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0
        ),
        rcnn=dict(
            assigner=dict(__max_iou, pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5),
            sampler=dict(__random, num=512, pos_fraction=0.25, add_gt_as_proposals=True),
            mask_size=28,
            pos_weight=-1,
            debug=False,
        ),
    ),
    test_cfg=dict(
        rpn=dict(
            nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0
        ),
        rcnn=dict(
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100,
            mask_thr_binary=0.5,
        ),
    ),
)

# ---------------------------------------------------------------- data (COCO 2017)
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
backend_args = None

# the steps training and testing share
__load_image = dict(type='LoadImageFromFile', backend_args=backend_args)
__load_annotations = dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
__resize = dict(type='Resize', scale=(1333, 800), keep_ratio=True)
train_pipeline = [
    __load_image,
    __load_annotations,
    __resize,
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    __load_image,
    __resize,
    __load_annotations,
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]

# 8 GPUs x 2 images
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args,
)
test_evaluator = val_evaluator

# ---------------------------------------------------------------- schedule (1x)
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'pos_embed': dict(decay_mult=0.0)}),
)

auto_scale_lr = dict(enable=False, base_batch_size=16)

# ---------------------------------------------------------------- runtime (also default_runtime.py)
default_hooks.checkpoint.max_keep_ckpts = 3
default_hooks.visualization = dict(type='DetVisualizationHook')
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
