# UperNet + SG-Former on ADE20K (512x512 crops, 160k iterations, batch 16 = 8 GPUs x 2).
#
# Shared base of configs/upernet_sgformer_{s,m,b}_ade20k.py; it is itself the S model.
# The recipe is mmseg's Swin/PVT UperNet one: UPerHead + auxiliary FCNHead, AdamW (lr 6e-5,
# weight decay 0.01, no decay on norms nor on the position embedding), linear warmup for 1500
# iterations then poly (power 1) decay to 0. Single-scale test resizes the short side to 512
# (long side <= 2048) and runs whole-image inference as mmseg's Swin configs do; the
# multi-scale (0.5-1.75) + flip test comes from mmseg's `tta_pipeline`/`tta_model` and is
# selected by `tools/test.py --tta`.
#
# Norm layers of the heads are SyncBN (from mmseg's base), the right choice for 8 GPUs;
# tools/train.py and tools/test.py turn SyncBN into BN when the run is not distributed
# (one process, CPU), see docs/segmentation.md.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
custom_imports = dict(imports=['mmsgformer'], allow_failed_imports=False)

crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
# Converted ImageNet-1k weights, made by tools/model_converters/sgformer2mm.py (see
# docs/segmentation.md). The size configs restate the path for their own arch.
checkpoint_file = 'checkpoints/sgformer_s_in1k_converted.pth'
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,  # drop the Swin backbone of mmseg's base
        type='mmsgformer.SGFormer',
        arch='s',
        in_channels=3,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150),
    test_cfg=dict(mode='whole'))

# AdamW; no weight decay on norm layers nor on the position embedding.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0., custom_keys={'pos_embed': dict(decay_mult=0.)}))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]

# 8 GPUs x 2 images = batch 16. `--auto-scale-lr` (if the tools offer it) rescales lr from 16.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
