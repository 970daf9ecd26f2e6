# CPU demo: UperNet with a tiny SG-Former on `ade_shapes`, a generated dataset in ADE20K's
# folder layout (tools/dataset_generators/generate_ade_shapes.py). Trains from scratch in about
# 10 minutes on 2 CPU cores; see tools/run_seg_demo.sh and docs/segmentation.md.
#
# The SG-Former-S ADE20K recipe (UPerHead + auxiliary FCNHead, AdamW without decay on
# norms/pos_embed, warmup + poly, ADE-style pipelines with reduce_zero_label=True), scaled
# down: 64x64 images, the tiny backbone without pretraining, narrow heads, plain BN (there is
# one process, so SyncBN has nothing to sync with), a short schedule evaluated once at the end,
# a larger lr because nothing is pretrained, and a fixed seed.
_base_ = ['../upernet/upernet_sgformer-s_8xb2-160k_ade20k-512x512.py', '../_base_/sgformer-tiny.py']

# ---------------------------------------------------------------- data
dataset_type = 'BaseSegDataset'
data_root = 'data/ade_shapes'
# Label PNGs: 0 = unlabeled (ignored), 1..5 = the classes below (reduce_zero_label=True).
metainfo = dict(
    classes=('background', 'circle', 'square', 'triangle', 'cross'),
    palette=[[50, 50, 50], [230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25]],
)
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
# mmseg's TTA at these ratios, written out: a text config replaces a list it inherits whole
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
            [dict(type='LoadAnnotations', reduce_zero_label=True)],
            [dict(type='PackSegInputs')],
        ],
    ),
]
# (`__`: a helper, not in the config)
__shapes = dict(type=dataset_type, data_root=data_root, metainfo=metainfo, reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8, num_workers=1, dataset=dict(__shapes, pipeline=train_pipeline)
)
val_dataloader = dict(batch_size=1, num_workers=1, dataset=dict(__shapes, pipeline=test_pipeline))
test_dataloader = val_dataloader

# ---------------------------------------------------------------- model
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # trained from scratch: no ImageNet checkpoint needed
    backbone=dict(arch={{_base_.tiny_arch}}, drop_path_rate=0.1, init_cfg=None),
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=64, num_classes=5, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=128, channels=32, num_classes=5, norm_cfg=norm_cfg),
)

# ------------------------------------------------ schedule: evaluate once, at the end
max_iters = 4500
warmup_iters = 50
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=warmup_iters, end=max_iters, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
auto_scale_lr = dict(base_batch_size=8)

default_hooks = dict(
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1, save_last=True),
    # with `tools/test.py --show-dir`, save every 5th validation image (mmseg's default: 50th)
    visualization=dict(interval=5),
)
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
