# CPU demo: UperNet with a tiny SG-Former on `ade_shapes`, a generated dataset in ADE20K's
# folder layout (tools/dataset_generators/generate_ade_shapes.py). Trains from scratch in about
# 10 minutes on 2 CPU cores; see tools/run_seg_demo.sh and docs/segmentation.md.
#
# It keeps the ADE20K recipe of ../_base_/upernet_sgformer_ade20k.py (UPerHead + auxiliary
# FCNHead, AdamW without decay on norms/pos_embed, warmup + poly, ADE-style pipelines with
# reduce_zero_label=True) and scales it down: 64x64 images, narrow heads, plain BN (there
# is one process, so SyncBN has nothing to sync with), a short schedule and a larger lr
# because nothing is pretrained.
# Its text twin configs/demo/upernet_sgformer-tiny_shapes.py states the same changes on purpose:
# neither config form can inherit the other (tests/test_config_pairs.py holds them equal).
from mmengine.config import read_base

with read_base():
    from .._base_.sgformer_tiny import tiny_arch
    from .._base_.upernet_sgformer_ade20k import *  # noqa: F401,F403

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
# the base's multi-scale + flip TTA at the demo's ratios, with its labels loaded as above
img_ratios = [0.75, 1.0, 1.25]
__scales, __flips, __labels, __pack = tta_pipeline[1].transforms  # (`__`: not in the config)
__scales[:] = [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios]
__labels[0].reduce_zero_label = True
__shapes = dict(type=dataset_type, data_root=data_root, metainfo=metainfo, reduce_zero_label=True)
train_dataloader.update(
    batch_size=8, num_workers=1, dataset=dict(__shapes, pipeline=train_pipeline)
)
val_dataloader.update(batch_size=1, num_workers=1, dataset=dict(__shapes, pipeline=test_pipeline))
test_dataloader = val_dataloader

# ---------------------------------------------------------------- model
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor.size = crop_size
model.data_preprocessor = data_preprocessor
model.backbone.update(
    arch=tiny_arch,  # replaces arch='s'
    drop_path_rate=0.1,
    init_cfg=None,
)  # trained from scratch
model.decode_head.update(
    in_channels=[32, 64, 128, 256], channels=64, num_classes=5, norm_cfg=norm_cfg
)
model.auxiliary_head.update(in_channels=128, channels=32, num_classes=5, norm_cfg=norm_cfg)

# ---------------------------------------------------------------- schedule
max_iters = 4500
warmup_iters = 50
optim_wrapper.optimizer.lr = 2e-3
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=warmup_iters, end=max_iters, by_epoch=False),
]
train_cfg.update(max_iters=max_iters, val_interval=max_iters)
default_hooks.checkpoint.update(interval=max_iters, max_keep_ckpts=1, save_last=True)
# with `tools/test.py --show-dir`, save every 5th validation image (mmseg's default: 50th)
default_hooks.visualization.interval = 5
env_cfg.cudnn_benchmark = False
randomness = dict(seed=0)
auto_scale_lr.base_batch_size = 8
