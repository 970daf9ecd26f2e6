# UperNet + SG-Former on ADE20K (512x512 crops, 160k iterations, batch 16 = 8 GPUs x 2).
#
# Shared base of upernet_sgformer_{s,m,b}_ade20k.py; it is itself the S model.
# The recipe is mmseg's Swin/PVT UperNet one: UPerHead + auxiliary FCNHead, AdamW (lr 6e-5,
# weight decay 0.01, no decay on norms nor on the position embedding), linear warmup for 1500
# iterations then poly (power 1) decay to 0. Single-scale test resizes the short side to 512
# (long side <= 2048) and runs whole-image inference as mmseg's Swin configs do; the
# multi-scale (0.5-1.75) + flip test is `tta_pipeline`/`tta_model`, selected by
# `tools/test.py --tta`.
#
# A pure-Python config (MMEngine's `read_base` style), so that downstream projects can inherit
# it from the installed package (`from mmsgformer.configs.upernet_sgformer_s_ade20k import *`).
# Pure-Python configs cannot inherit mmseg's text configs (`mmseg::...`), so the whole recipe
# is spelled out here (the runtime in default_runtime.py); its values are those of mmseg 1.2.2's
# Swin-T UperNet (`upernet_swin.py`, `ade20k.py`, `default_runtime.py`, `schedule_160k.py`,
# `swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py`) with our changes
# (tests/test_segmentation_configs.py compares them).
#
# Norm layers of the heads are SyncBN, the right choice for 8 GPUs; tools/train.py and
# tools/test.py turn SyncBN into BN when the run is not distributed (one process, CPU),
# see docs/segmentation.md.
from mmengine.config import read_base

with read_base():  # custom_imports (mmsgformer), hooks, environment, logging
    from .default_runtime import *  # noqa: F401,F403

default_scope = 'mmseg'

# ---------------------------------------------------------------- model
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size,
)
# Converted ImageNet-1k weights, made by tools/model_converters/sgformer2mm.py (see
# docs/segmentation.md). The size configs restate the path for their own arch.
checkpoint_file = 'checkpoints/sgformer_s_in1k_converted.pth'
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='mmsgformer.SGFormer',
        arch='s',
        in_channels=3,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file),
    ),
    decode_head=dict(
        type='UPerHead',
        in_channels=[64, 128, 256, 512],
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    ),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=256,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'),
)

# ---------------------------------------------------------------- data (ADE20K)
dataset_type = 'ADE20KDataset'
data_root = 'data/ade/ADEChallengeData2016'
# the steps training and testing share (`__` names: this file's helpers, not in the config)
__load_image = dict(type='LoadImageFromFile')
__load_labels = dict(type='LoadAnnotations', reduce_zero_label=True)
__pack = dict(type='PackSegInputs')
train_pipeline = [
    __load_image,
    __load_labels,
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    __pack,
]
test_pipeline = [
    __load_image,
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    __load_labels,
    __pack,
]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
            [
                dict(type='RandomFlip', prob=0.0, direction='horizontal'),
                dict(type='RandomFlip', prob=1.0, direction='horizontal'),
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ],
    ),
]
tta_model = dict(type='SegTTAModel')

# 8 GPUs x 2 images = batch 16. `--auto-scale-lr` rescales lr from 16.
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline,
    ),
)
# validation: the training loader one image at a time, in order, on the validation split
val_dataloader = dict(
    train_dataloader,
    batch_size=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        train_dataloader['dataset'],
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# ---------------------------------------------------------------- schedule (160k iterations)
# AdamW; no weight decay on norm layers nor on the position embedding.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'pos_embed': dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=16)

# ---------------------------------------------------------------- runtime (also default_runtime.py)
default_hooks.logger.log_metric_by_epoch = False
default_hooks.checkpoint.update(by_epoch=False, interval=16000)
default_hooks.visualization = dict(type='SegVisualizationHook')
env_cfg.cudnn_benchmark = True
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
