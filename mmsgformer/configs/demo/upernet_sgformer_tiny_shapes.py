# CPU demo: UperNet with a tiny SG-Former on `ade_shapes`, a generated dataset in ADE20K's
# folder layout (mmsgformer.datasets.generate_ade_shapes). Trains from scratch in about
# 10 minutes on 2 CPU cores; see tools/run_seg_demo.sh and docs/segmentation.md.
#
# It keeps the ADE20K recipe of ../_base_/upernet_sgformer_ade20k.py (UPerHead + auxiliary
# FCNHead, AdamW without decay on norms/pos_embed, warmup + poly, ADE-style pipelines with
# reduce_zero_label=True) and scales it down: 64x64 images, narrow heads, plain BN (there
# is one process, so SyncBN has nothing to sync with), a short schedule and a larger lr
# because nothing is pretrained.
_base_ = ['../_base_/upernet_sgformer_ade20k.py']

# ---------------------------------------------------------------- data
dataset_type = 'BaseSegDataset'
data_root = 'data/ade_shapes'
# Label PNGs: 0 = unlabeled (ignored), 1..5 = the classes below (reduce_zero_label=True).
metainfo = dict(
    classes=('background', 'circle', 'square', 'triangle', 'cross'),
    palette=[[50, 50, 50], [230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25]])
img_scale = (64, 64)
crop_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
img_ratios = [0.75, 1.0, 1.25]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal'),
            ],
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ]),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        reduce_zero_label=True,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        reduce_zero_label=True,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# ---------------------------------------------------------------- model
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(
            _delete_=True,  # the base names arch='s'
            embed_dims=[32, 64, 128, 256],
            num_heads=[2, 2, 4, 8],
            depths=[2, 2, 2, 1],
            mlp_ratios=[4, 4, 4, 4]),
        drop_path_rate=0.1,
        init_cfg=None),  # trained from scratch
    decode_head=dict(
        in_channels=[32, 64, 128, 256],
        channels=64,
        num_classes=5,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=128,
        channels=32,
        num_classes=5,
        norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))

# ---------------------------------------------------------------- schedule
max_iters = 4500
warmup_iters = 50
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=warmup_iters, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1, save_last=True),
    # with `tools/test.py --show-dir`, save every 5th validation image (mmseg's default: 50th)
    visualization=dict(type='SegVisualizationHook', interval=5))
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=8)
