# ImageNet-1k classification with SG-Former (mmpretrain ImageClassifier).
# Evaluation follows the official code: resize the short side to 256 (bicubic, PIL), centre crop
# 224, ImageNet mean/std. Training follows the official recipe (DeiT/Swin style AdamW, 300 epochs,
# batch 1024 = 16 GPUs x 64, Mixup/CutMix, RandAugment, random erasing, label smoothing).
#
# A pure-Python config (MMEngine's `read_base` style), so that downstream projects can inherit
# it from the installed package (`from mmsgformer.configs.sgformer_s_in1k import *`). Pure-Python
# configs cannot inherit mmpretrain's text configs (`mmpretrain::...`), so the whole recipe is
# spelled out here (the runtime in default_runtime.py); its values are those of mmpretrain
# 1.2.0's Swin-T (`imagenet_bs64_swin_224.py`, `imagenet_bs1024_adamw_swin.py`,
# `default_runtime.py`, `swin-tiny_16xb64_in1k.py`) with our changes
# (tests/test_classification.py compares them).
from mmengine.config import read_base

with read_base():  # custom_imports (mmsgformer), hooks, environment, logging
    from .default_runtime import *  # noqa: F401,F403

default_scope = 'mmpretrain'

# ---------------------------------------------------------------- model
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmsgformer.SGFormer', arch='s', out_indices=(3,), drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        init_cfg=None,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False,
    ),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.0),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0),
    ],
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)

# ---------------------------------------------------------------- data (ImageNet-1k)
dataset_type = 'ImageNet'
data_preprocessor = dict(
    num_classes=1000, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True
)
bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic'),
    ),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std,
    ),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=5,
    dataset=dict(
        type=dataset_type, data_root='data/imagenet', split='train', pipeline=train_pipeline
    ),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=5,
    dataset=dict(type=dataset_type, data_root='data/imagenet', split='val', pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# ---------------------------------------------------------------- schedule (300 epochs)
# AdamW, lr 1e-3 for batch 1024; no weight decay on norms, biases, 1-d parameters nor the
# position embedding.
optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=5e-4 * 1024 / 512, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)
    ),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={
            '.absolute_pos_embed': dict(decay_mult=0.0),
            '.relative_position_bias_table': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
        },
    ),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)

# ---------------------------------------------------------------- runtime (also default_runtime.py)
default_hooks.logger.interval = 100
default_hooks.visualization = dict(type='VisualizationHook', enable=False)
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
randomness = dict(seed=None, deterministic=False)
