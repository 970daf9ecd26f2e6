# UperNet + SG-Former-S on ADE20K, 512x512, 160k iterations, 8 GPUs x 2 images.
# Paper: 49.9 mIoU single-scale, 51.5 multi-scale + flip (tools/test.py --tta).
#
# mmseg's ADE20K data, 160k schedule and runtime; what the recipe changes (mmseg's Swin/PVT
# UperNet recipe):
#   - AdamW, lr 6e-5, weight decay 0.01; no weight decay on norm layers nor on the position
#     embedding (`backbone.pos_embed`); linear warm-up for 1500 iterations, then poly
#     (power 1) decay to 0 (mmseg's 160k: SGD, poly 0.9);
#   - 2 images per GPU (mmseg's ADE20K: 4); `--auto-scale-lr` rescales lr from batch 16;
#   - crash-safe checkpoints and the divergence guard (docs/reliability.md).
# Heads are SyncBN; tools/train.py and tools/test.py turn it into BN when the run is not
# distributed (docs/segmentation.md).
_base_ = [
    '../_base_/models/upernet_sgformer.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150),
)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'pos_embed': dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)

train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

default_hooks = dict(checkpoint=dict(type='mmsgformer.AtomicCheckpointHook'))
custom_hooks = [dict(type='mmsgformer.DivergenceGuardHook')]
